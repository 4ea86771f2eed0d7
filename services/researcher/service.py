"""The Researcher gRPC service: Propose and Repair.

With an LLM it writes layers as code (ASI-Arch's way) and repairs them; with
no LLM, or when the LLM fails, it proposes DSL mutations and repairs DSL
candidates deterministically. Every answer says which path produced it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import grpc
import pydantic
import structlog
from prometheus_client import Counter, Histogram

from asiarch.common import contract
from asiarch.common.client import open_channel
from asiarch.common.errors import InvalidArgument
from asiarch.common.llm import LLM, LLMError, Message, NoLLM, create_llm, generate_model
from asiarch.common.server import ServiceDefinition
from asiarch.researcher import prompts, proposer
from asiarch.researcher.config import ResearcherSettings
from asiarch.researcher.dsl import render
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2, researcher_pb2, researcher_pb2_grpc

DEFAULT_PORT = 50052
log = structlog.get_logger("asiarch.researcher")
PROPOSALS = Counter(
    "asiarch_researcher_proposals_total",
    "Proposals answered, by path: llm (the LLM's code), dsl (a DSL mutation asked for), fallback (a DSL "
    "mutation because the LLM was missing, failed or timed out).",
    ["path"],
)
LLM_SECONDS = Histogram(
    "asiarch_researcher_llm_seconds",
    "One LLM answer (its attempts included), by task (propose, repair) and outcome: ok, invalid (no valid "
    "answer), error (the LLM failed), cancelled (timed out or the call ended).",
    ["task", "outcome"],
    buckets=(0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)


class CodeProposal(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1, max_length=64)
    motivation: str = pydantic.Field(min_length=10)
    code: str = pydantic.Field(min_length=50)


class CodeRepair(pydantic.BaseModel):
    summary: str = pydantic.Field(min_length=3)
    code: str = pydantic.Field(min_length=50)


AnswerT = TypeVar("AnswerT", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class _Novel:
    """A proposal, its similarity to the closest stored motivation, and how many rewrites it took."""

    proposal: common_pb2.Proposal
    similarity: float
    rewrites: int


def _metrics(experiment: common_pb2.Experiment) -> str:
    m = experiment.evaluation.metrics
    parts = [f"val_loss={m.val_loss:.4f}"] if m.HasField("val_loss") else []
    parts += [f"{b.name}={b.score:.3f}" for b in m.benchmarks]
    return ", ".join(parts) or "not measured"


class ResearcherServicer(researcher_pb2_grpc.ResearcherServicer):
    def __init__(self, settings: ResearcherSettings, llm: LLM) -> None:
        self.settings = settings
        self.llm = llm
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        self.analyst_channel = (
            open_channel(settings.analyst_address, auth_token=token) if settings.analyst_address else None
        )

    async def _knowledge(self, parent: common_pb2.Experiment, run_id: str) -> tuple[list[str], str]:
        if self.analyst_channel is None:
            return [], "no analyst configured"
        query = parent.analysis.synthesis or parent.proposal.motivation or parent.name
        stub = analyst_pb2_grpc.AnalystStub(self.analyst_channel)
        try:
            reply = await stub.Retrieve(
                analyst_pb2.RetrieveRequest(query=query, k=5, run_id=run_id), timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("knowledge retrieval failed", code=exc.code().name)
            return [], f"retrieval failed: {exc.details()}"
        return [hit.id for hit in reply.hits], "\n".join(
            f"- {hit.title}: {hit.text[:400]}" for hit in reply.hits
        )

    async def _similarity(self, motivation: str, run_id: str) -> float:
        if self.analyst_channel is None:
            return 0.0
        stub = analyst_pb2_grpc.AnalystStub(self.analyst_channel)
        try:
            reply = await stub.FindSimilar(
                analyst_pb2.FindSimilarRequest(motivation=motivation, k=1, run_id=run_id), timeout=30
            )
        except grpc.aio.AioRpcError:
            return 0.0
        return contract.similarity(reply.novelty)

    def _too_similar(self, similarity: float, rewrites: int) -> bool:
        """Whether a proposal this similar to a stored one is rewritten (while rewrites are left)."""
        return (
            similarity >= self.settings.researcher_novelty_threshold
            and rewrites < self.settings.researcher_max_rewrites
        )

    async def Propose(
        self, request: researcher_pb2.ProposeRequest, context: grpc.aio.ServicerContext
    ) -> researcher_pb2.ProposeResponse:
        parent = request.parent
        if not parent.proposal.source.module_source.strip() and not parent.proposal.spec_json:
            raise InvalidArgument("parent.proposal needs a source or a spec_json to build on")
        if request.experiment_id and not contract.EXPERIMENT_ID.fullmatch(request.experiment_id):
            raise InvalidArgument(f"experiment_id must be {contract.EXPERIMENT_ID_RULE}")
        # The child's id, minted by the caller, tags every log line of this call (and the proposal's own).
        with structlog.contextvars.bound_contextvars(experiment_id=request.experiment_id or None):
            response = await self._propose(request)
            llm = response.proposal.origin == common_pb2.PROPOSAL_ORIGIN_LLM_CODE
            PROPOSALS.labels("llm" if llm else "fallback" if response.fallback_reason else "dsl").inc()
            log.info(
                "proposed",
                name=response.proposal.name,
                parent=parent.id,
                rewrites=response.rewrites,
                max_similarity=round(response.max_similarity, 4),
                fallback_reason=response.fallback_reason or None,
            )
        return response

    async def _propose(self, request: researcher_pb2.ProposeRequest) -> researcher_pb2.ProposeResponse:
        """Propose's work once the request is known to be sound: the LLM's proposal, else a DSL mutation."""
        parent = request.parent
        knowledge_ids, knowledge = await self._knowledge(parent, request.run_id)
        fallback = ""
        wants_code = request.mode != common_pb2.PROPOSAL_MODE_DSL
        if wants_code and not isinstance(self.llm, NoLLM):
            found, fallback = await self._novel_llm_proposal(request, knowledge)
            if found is not None:
                return researcher_pb2.ProposeResponse(
                    proposal=found.proposal,
                    knowledge_ids=knowledge_ids,
                    max_similarity=found.similarity,
                    rewrites=found.rewrites,
                )
        elif wants_code and request.mode == common_pb2.PROPOSAL_MODE_CODE:
            fallback = "no LLM configured (ASIARCH_LLM_BACKEND=none): proposed a DSL mutation instead"
        found = await self._novel_mutation(request)
        return researcher_pb2.ProposeResponse(
            proposal=found.proposal,
            knowledge_ids=knowledge_ids,
            max_similarity=found.similarity,
            rewrites=found.rewrites,
            fallback_reason=fallback,
        )

    async def _novel_llm_proposal(
        self, request: researcher_pb2.ProposeRequest, knowledge: str
    ) -> tuple[_Novel | None, str]:
        """The LLM's proposal, rewritten while it is too similar to a stored one; None and why without one.

        A rewrite the LLM fails to give keeps the last proposal.
        """
        proposal, fallback = await self._llm_proposal(request, knowledge)
        if proposal is None:
            return None, fallback
        rewrites = 0
        similarity = await self._similarity(proposal.motivation, request.run_id)
        while self._too_similar(similarity, rewrites):
            rewrites += 1
            note = (
                f"Your previous idea ({proposal.name}: {proposal.motivation[:300]}) is too similar to an "
                "earlier experiment. Propose a clearly different mechanism."
            )
            retry, fallback = await self._llm_proposal(request, f"{knowledge}\n\n{note}")
            if retry is None:
                break
            proposal = retry
            similarity = await self._similarity(proposal.motivation, request.run_id)
        return _Novel(proposal, similarity, rewrites), fallback

    async def _novel_mutation(self, request: researcher_pb2.ProposeRequest) -> _Novel:
        """A DSL mutation of the parent, drawn again (next seed, no spec twice) while it is too similar."""
        parent, references = request.parent, list(request.references)
        avoid: set[str] = set()
        rewrites = 0
        draft = proposer.mutation_draft(parent, references, request.seed, avoid)
        similarity = await self._similarity(draft.motivation, request.run_id)
        while self._too_similar(similarity, rewrites):
            avoid.add(draft.spec.model_dump_json())
            rewrites += 1
            draft = proposer.mutation_draft(parent, references, request.seed + rewrites, avoid)
            similarity = await self._similarity(draft.motivation, request.run_id)
        proposal = common_pb2.Proposal(
            name=draft.name,
            motivation=draft.motivation,
            source=common_pb2.ArchitectureSource(
                module_source=render(draft.spec), class_name=contract.DEFAULT_CLASS_NAME
            ),
            spec_json=draft.spec.model_dump_json(),
            origin=common_pb2.PROPOSAL_ORIGIN_DSL_MUTATION,
            generator=f"{proposer.MUTATION_PREFIX}{draft.operator}",
        )
        return _Novel(proposal, similarity, rewrites)

    async def _llm_proposal(
        self, request: researcher_pb2.ProposeRequest, knowledge: str
    ) -> tuple[common_pb2.Proposal | None, str]:
        limit = self.settings.researcher_llm_timeout_seconds
        try:
            return await asyncio.wait_for(self._ask_llm(request, knowledge), timeout=limit)
        except TimeoutError:
            return None, f"the LLM timed out after {limit:g} s: proposed a DSL mutation instead"
        except Exception as exc:  # a broken LLM client must cost one proposal's quality, never the call
            log.exception("LLM proposal failed unexpectedly")
            return None, f"the LLM call failed ({type(exc).__name__}): proposed a DSL mutation instead"

    async def _ask(self, system: str, prompt: str, answer_type: type[AnswerT], task: str) -> AnswerT | None:
        """An answer of `answer_type` from the LLM; None when it gave no valid one. LLMError passes on."""
        messages = [Message("system", system), Message("user", prompt)]
        attempts = self.settings.researcher_llm_attempts
        started, outcome = time.perf_counter(), "error"
        try:
            answer = await generate_model(self.llm, messages, answer_type, attempts=attempts, max_tokens=2048)
            outcome = "ok" if answer is not None else "invalid"
            return answer
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            LLM_SECONDS.labels(task, outcome).observe(time.perf_counter() - started)

    async def _ask_llm(
        self, request: researcher_pb2.ProposeRequest, knowledge: str
    ) -> tuple[common_pb2.Proposal | None, str]:
        parent = request.parent
        references = "\n".join(
            f"- {r.name}: {_metrics(r)}; {r.proposal.motivation[:300]}" for r in request.references
        )
        prompt = prompts.load("propose_code").format(
            class_name=contract.DEFAULT_CLASS_NAME,
            parent_name=parent.name or parent.proposal.name,
            parent_motivation=parent.proposal.motivation or "(none)",
            parent_metrics=_metrics(parent),
            parent_analysis=parent.analysis.synthesis or "(none yet)",
            parent_source=parent.proposal.source.module_source,
            references=references or "(none)",
            knowledge=knowledge or "(none)",
        )
        try:
            answer = await self._ask(
                "You design neural network layers. Answer with JSON only.", prompt, CodeProposal, "propose"
            )
        except LLMError as exc:
            return None, f"the LLM failed ({exc.message}): proposed a DSL mutation instead"
        if answer is None:
            return None, "the LLM gave no valid answer: proposed a DSL mutation instead"
        return (
            common_pb2.Proposal(
                name=answer.name[:64],
                motivation=answer.motivation,
                source=common_pb2.ArchitectureSource(
                    module_source=answer.code, class_name=contract.DEFAULT_CLASS_NAME
                ),
                origin=common_pb2.PROPOSAL_ORIGIN_LLM_CODE,
                generator=f"llm:{type(self.llm).__name__}",
            ),
            "",
        )

    async def Repair(
        self, request: researcher_pb2.RepairRequest, context: grpc.aio.ServicerContext
    ) -> researcher_pb2.RepairResponse:
        if not request.source.module_source.strip():
            raise InvalidArgument("source.module_source must not be empty")
        if not request.error.strip():
            raise InvalidArgument("error must say what failed")
        if not isinstance(self.llm, NoLLM) and not request.spec_json:
            prompt = prompts.load("repair").format(
                stage=common_pb2.EvaluationStage.Name(request.failed_stage),
                error=request.error[-4000:],
                motivation=request.motivation or "(none)",
                source=request.source.module_source,
            )
            try:
                answer = await self._ask(
                    "You fix Python code. Answer with JSON only.", prompt, CodeRepair, "repair"
                )
            except Exception:  # LLMError or a broken client: fall back to the deterministic repair
                log.exception("LLM repair failed")
                answer = None
            if answer is not None:
                return researcher_pb2.RepairResponse(
                    source=common_pb2.ArchitectureSource(
                        module_source=answer.code, class_name=request.source.class_name
                    ),
                    summary=answer.summary,
                    repaired_by=f"llm:{type(self.llm).__name__}",
                )
        source, spec_json, summary = proposer.deterministic_repair(request.spec_json, request.error)
        return researcher_pb2.RepairResponse(
            source=common_pb2.ArchitectureSource(
                module_source=source, class_name=contract.DEFAULT_CLASS_NAME
            ),
            spec_json=spec_json,
            summary=summary,
            repaired_by="dsl:deterministic",
        )


@asynccontextmanager
async def lifespan(server: grpc.aio.Server, settings: ResearcherSettings) -> AsyncIterator[Sequence[str]]:
    llm = create_llm(settings)
    await llm.start()
    servicer = ResearcherServicer(settings, llm)
    researcher_pb2_grpc.add_ResearcherServicer_to_server(servicer, server)
    try:
        yield [researcher_pb2.DESCRIPTOR.services_by_name["Researcher"].full_name]
    finally:
        if servicer.analyst_channel is not None:
            await servicer.analyst_channel.close()
        await llm.close()


SERVICE = ServiceDefinition(
    name="researcher",
    default_port=DEFAULT_PORT,
    lifespan=lifespan,  # type: ignore[arg-type]
    settings_type=ResearcherSettings,
    summary="proposals (LLM code or DSL mutations) and repairs",
    default_metrics_port=9452,
)
