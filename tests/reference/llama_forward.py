#!/usr/bin/python3
"""Independent reference for the C++ forward: a plain PyTorch Llama written from the HF definition.

Covers the model types as transformers builds them: llama, mistral (sliding window: query i sees keys
j with i - W < j <= i; absent sliding_window means 4096), qwen2 (q/k/v biases), qwen3 (per-head
q_norm/k_norm before RoPE, head_dim 128 when absent), RoPE scaling "linear" and "llama3", tied
embeddings stored as embed_tokens or as lm_head only.

usage: llama_forward.py MODEL_DIR IDS_AND_LOGITS.safetensors TOLERANCE [f64|f32]
Reads tensors "ids" [B, T] (int64) and "logits" [B, T, V] (from the C++ forward) from the second
file, recomputes the logits here in float64 (default) or float32 (weights, activations and the RoPE
tables in float32, as HF transformers computes them) and exits 1 if max |diff| > TOLERANCE.
Prints: max_abs_diff=<x> nll=<mean next-token NLL of the reference>.
"""
import json
import math
import sys

import torch

from safetensors_np import read_safetensors as read_numpy


def read_safetensors(path):
    return {name: torch.from_numpy(arr.copy()) for name, arr in read_numpy(path).items()}


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def inv_frequencies(cfg, hd, dtype):
    """RoPE inverse frequencies [hd / 2] with the rope_scaling rules of transformers' modeling_rope_utils."""
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2, dtype=dtype) / hd))
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        return inv / rs["factor"]
    if kind == "llama3":
        old, lo, hi, f = rs["original_max_position_embeddings"], rs["low_freq_factor"], rs["high_freq_factor"], rs["factor"]
        out = []
        for w in inv.tolist():  # one frequency at a time: long wavelengths slowed by f, short kept, blend between
            wavelen = 2 * math.pi / w
            if wavelen < old / hi:
                out.append(w)
            elif wavelen > old / lo:
                out.append(w / f)
            else:
                a = (old / wavelen - lo) / (hi - lo)
                out.append((1 - a) * w / f + a * w)
        return torch.tensor(out, dtype=dtype)
    assert kind == "default", kind
    return inv


def forward(cfg, W, ids, dtype):
    kind = cfg["model_type"]
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or {"mistral": 8, "qwen2": 32, "qwen3": 32}.get(kind, nh)
    hd = cfg.get("head_dim") or (128 if kind == "qwen3" else H // nh)
    eps = cfg.get("rms_norm_eps", 1e-6)
    window = cfg.get("sliding_window", 4096) if kind == "mistral" else None
    B, T = ids.shape
    inv = inv_frequencies(cfg, hd, dtype)
    ang = torch.arange(T, dtype=dtype)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    embed = W.get("model.embed_tokens.weight", W.get("lm_head.weight"))
    x = embed[ids]
    pos = torch.arange(T)
    allowed = pos[None, :] <= pos[:, None]  # [query, key]
    if window is not None:
        allowed &= pos[None, :] > pos[:, None] - window
    mask = torch.zeros((T, T), dtype=dtype).masked_fill(~allowed, float("-inf"))

    def linear(h, name):
        b = W.get(name + ".bias")
        return h @ W[name + ".weight"].T + (0 if b is None else b)

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(h, p + "self_attn.q_proj").view(B, T, nh, hd).transpose(1, 2)
        k = linear(h, p + "self_attn.k_proj").view(B, T, nkv, hd).transpose(1, 2)
        v = linear(h, p + "self_attn.v_proj").view(B, T, nkv, hd).transpose(1, 2)
        if kind == "qwen3":
            q, k = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps), rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + mask, -1)
        o = (att @ v).transpose(1, 2).reshape(B, T, nh * hd)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)
        x = x + g @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    lm = W.get("lm_head.weight", embed)
    return x @ lm.T


def main():
    model_dir, io_path, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    dtype = {"f64": torch.float64, "f32": torch.float32}[sys.argv[4] if len(sys.argv) > 4 else "f64"]
    cfg = json.load(open(f"{model_dir}/config.json"))
    W = {k: v.to(dtype) for k, v in read_safetensors(f"{model_dir}/model.safetensors").items()}
    io = read_safetensors(io_path)
    ids, logits = io["ids"].long(), io["logits"].double()
    with torch.no_grad():
        ref = forward(cfg, W, ids, dtype).double()
    diff = (ref - logits).abs().max().item()
    nll = torch.nn.functional.cross_entropy(ref[:, :-1].reshape(-1, ref.shape[-1]), ids[:, 1:].reshape(-1)).item()
    print(f"max_abs_diff={diff:.3e} nll={nll:.10f}")
    sys.exit(0 if diff <= tol else 1)


if __name__ == "__main__":
    main()
