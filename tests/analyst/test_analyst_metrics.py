"""The analyst's series on its live /metrics: records, store and vector-upsert latency, cognition hits."""

from __future__ import annotations

from pathlib import Path

import pytest
from analyst_data import experiment
from metrics_support import metrics_port, moved, scrape, value
from support import start_service

from asiarch.v1 import analyst_pb2, analyst_pb2_grpc


@pytest.mark.slow
def test_records_store_and_upsert_latency_and_cognition_hits_move(tmp_path: Path) -> None:
    workdir = tmp_path
    env = {"ASIARCH_RUN_DIR": str(workdir / "run"), "ASIARCH_ANALYST_INGEST_BUILTIN": "false"}
    analyst = start_service("analyst", workdir, env=env, timeout=120)
    try:
        port = metrics_port(analyst)
        stub = analyst_pb2_grpc.AnalystStub(analyst.channel())
        before = scrape(port)
        e = experiment("m1", motivation="Gate the delta rule update so stale associations decay.")
        stub.Record(analyst_pb2.RecordRequest(experiment=e), timeout=60)
        stub.Record(analyst_pb2.RecordRequest(experiment=e), timeout=60)  # already stored
        entry = analyst_pb2.CognitionEntry(
            id="note-sparse-write",
            title="Write only the top-k keys",
            trigger_patterns=["the state saturates when every token writes to it"],
            design_insight="Writing only the most surprising tokens keeps the state from saturating.",
            reference="internal note",
        )
        stub.IngestCognition(analyst_pb2.IngestCognitionRequest(entries=[entry]), timeout=60)
        query = analyst_pb2.RetrieveRequest(query="every token writes and the state saturates", k=1)
        hits = stub.Retrieve(query, timeout=30).hits
        after = scrape(port)
    finally:
        analyst.stop()

    records = "asiarch_analyst_records_total"
    assert moved(before, after, records, status="succeeded", outcome="created") == 1
    assert moved(before, after, records, status="succeeded", outcome="existing") == 1
    assert [h.id for h in hits] == ["note-sparse-write"]
    assert moved(before, after, "asiarch_analyst_cognition_hits_total") == 1
    store = "asiarch_analyst_store_seconds_count"
    assert moved(before, after, store, collection="experiments", operation="insert") == 1
    assert value(after, "asiarch_analyst_store_seconds_sum", collection="experiments") > 0
    upserts = "asiarch_analyst_vector_upsert_seconds_count"
    assert moved(before, after, upserts, collection="motivations") >= 1
    assert moved(before, after, upserts, collection="cognition") == 1
    assert moved(before, after, "grpc_server_handled_total", grpc_method="Record", grpc_code="OK") == 2
