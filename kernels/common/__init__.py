"""The generic core every family is built from.

All four families are special cases of one recurrence over a per-head state
S in R^{K x V} (for each batch b and head h, token by token):

    S <- exp(g_t) * S                                  (decay; g = 0 when absent)
    S <- S + k_t (beta_t (v_t - S^T k_t))^T            (delta rule, when beta is given)
    S <- S + k_t v_t^T                                 (plain update, when beta is None)
    o_t = scale * S^T q_t

linear attention: g = None, beta = None; simple GLA / retention: g, no beta;
delta rule: beta, no g; gated delta rule: both.

Implementations, same signature
`(q, k, v, g, beta, scale, initial_state, output_final_state[, chunk_size]) -> (o, final_state)`
with q, k: [B, T, H, K]; v: [B, T, H, V]; g, beta: [B, T, H]; initial_state and
final_state: [B, H, K, V] (final state in fp32):
- naive.naive_recurrent            per-token reference (tests only)
- chunk_torch.chunk_torch          chunked PyTorch, the CPU path
- triton_chunk.chunk_triton        Triton chunk kernels, the CUDA path
- triton_recurrent.fused_recurrent_triton  Triton per-token kernel

Linear attention's optional output normalisation (FLA's `normalize=True`) is applied after the core by
`dispatch.run`: normalize.normalize_torch (PyTorch) or triton_normalize.normalize_triton (fused
kernels), beside the core of the same backend.
"""
