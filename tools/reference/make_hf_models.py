#!/usr/bin/python3
"""Builds tiny random-weight models in Hugging Face layout, with float64 reference dumps.

The forward passes below restate what Hugging Face transformers computes for
GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM,
in plain torch and float64, so the C++ runtime can be checked layer by layer
without transformers installed. Run with Debian's /usr/bin/python3 (torch only):

    /usr/bin/python3 tools/reference/make_hf_models.py OUT_DIR [--shared SHARED_DIR]

OUT_DIR/<model>/ gets config.json, model.safetensors (or shards plus
model.safetensors.index.json), tokenizer files copied from SHARED_DIR/tokenizers,
and reference.bin; OUT_DIR/DONE is written last. Seeds are fixed, so the output
is the same on every run.

reference.bin (all little-endian):
    8 bytes   magic b"LBHFREF1"
    int32     T (tokens), L (layers), D (residual width), V (vocab)
    int32     tokens[T]
    float32   embedding output, (T, D)              -- the residual before block 0
    float32   residual after block l, (T, D), for l = 0 .. L-1 (before the final norm)
    float32   logits, (T, V)
Each value is computed in float64 from exactly the weights stored in that
folder (the F16/BF16 variants from their rounded weights) and rounded to float32
only when written.
"""

import argparse
import json
import math
import os
import shutil
import struct
import sys

try:
    import torch
except ImportError as e:  # the C++ test skips when this happens
    print(f"make_hf_models.py: cannot import torch ({e}); no reference models written", file=sys.stderr)
    sys.exit(2)

N_TOKENS = 16
SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


# ---------------------------------------------------------------- file writers

def tensor_bytes(t):
    """Raw little-endian bytes of a contiguous tensor (the machines are little-endian)."""
    t = t.contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype("<f4").tobytes()


def save_safetensors(path, tensors):
    """tensors: dict name -> tensor in its storage dtype, written in insertion order."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        data = tensor_bytes(t)
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    # Padding with spaces to 8 bytes keeps every tensor aligned to its element size.
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    return offset


def save_reference(path, tokens, embed, hidden, logits):
    with open(path, "wb") as f:
        f.write(b"LBHFREF1")
        f.write(struct.pack("<4i", len(tokens), len(hidden), embed.shape[1], logits.shape[1]))
        f.write(struct.pack(f"<{len(tokens)}i", *tokens))
        for t in [embed] + hidden + [logits]:
            f.write(t.to(torch.float32).contiguous().numpy().astype("<f4").tobytes())


def write_folder(out, name, config, tensors, dtype, tokens, tokenizer_files, tokenizer_config, shards=1):
    """Stores `tensors` (float64 masters) as `dtype` and the reference computed from the stored values."""
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    stored = {k: v.to(dtype) for k, v in tensors.items()}
    config = dict(config, torch_dtype={torch.float32: "float32", torch.float16: "float16",
                                       torch.bfloat16: "bfloat16"}[dtype])
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if shards == 1:
        save_safetensors(os.path.join(folder, "model.safetensors"), stored)
    else:
        names = list(stored)
        per = math.ceil(len(names) / shards)
        weight_map, total = {}, 0
        for s in range(shards):
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {k: stored[k] for k in names[s * per:(s + 1) * per]}
            total += save_safetensors(os.path.join(folder, file), part)
            weight_map.update({k: file for k in part})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    for src in tokenizer_files:
        shutil.copyfile(src, os.path.join(folder, os.path.basename(src)))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config, f, indent=2)
    weights = {k: v.to(torch.float64) for k, v in stored.items()}
    forward = gpt2_forward if config["model_type"] == "gpt2" else llama_forward
    embed, hidden, logits = forward(config, weights, tokens)
    save_reference(os.path.join(folder, "reference.bin"), tokens, embed, hidden, logits)
    print(f"wrote {folder}: {len(tensors)} tensors, {config['torch_dtype']}, "
          f"max|logit| {logits.abs().max().item():.3f}, logit std {logits.std().item():.3f}")


# ---------------------------------------------------------------- forward passes

def causal_attention(q, k, v):
    """q (H, T, hd), k/v (H, T, hd) -> (T, H*hd); scaled by 1/sqrt(hd), causal mask."""
    h, t, hd = q.shape
    scores = q @ k.transpose(1, 2) / math.sqrt(hd)                       # (H, T, T)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v                              # (H, T, hd)
    return out.transpose(0, 1).reshape(t, h * hd)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def llama_forward(c, w, tokens):
    """LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM (q/k/v biases when present)."""
    d, nh, nkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or d // nh
    eps = c["rms_norm_eps"]
    t = len(tokens)
    x = w["model.embed_tokens.weight"][tokens]                            # (T, D)
    embed = x.clone()
    inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))  # (hd/2)
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)   # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)                               # (T, hd)
    cos, sin = emb.cos(), emb.sin()
    hidden = []
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        a = rms_norm(x, w[p + "input_layernorm.weight"], eps)

        def proj(n):
            y = a @ w[p + f"self_attn.{n}_proj.weight"].T
            bias = w.get(p + f"self_attn.{n}_proj.bias")
            return y if bias is None else y + bias
        q = proj("q").view(t, nh, hd).transpose(0, 1)                     # (H, T, hd)
        k = proj("k").view(t, nkv, hd).transpose(0, 1)                    # (KV, T, hd)
        v = proj("v").view(t, nkv, hd).transpose(0, 1)                    # (KV, T, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # repeat_kv: query head i reads key/value head i // (H / KV).
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        x = x + causal_attention(q, k, v) @ w[p + "self_attn.o_proj.weight"].T
        m = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = m @ w[p + "mlp.gate_proj.weight"].T
        up = m @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
        hidden.append(x.clone())
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    logits = rms_norm(x, w["model.norm.weight"], eps) @ head.T            # (T, V)
    return embed, hidden, logits


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def gpt2_forward(c, w, tokens):
    """GPT2LMHeadModel: learned positions, pre-LayerNorm blocks, Conv1D (x @ W + b) with W (in, out)."""
    d, nh = c["n_embd"], c["n_head"]
    hd = d // nh
    eps = c["layer_norm_epsilon"]
    pre = "transformer." if "transformer.wte.weight" in w else ""
    t = len(tokens)
    x = w[pre + "wte.weight"][tokens] + w[pre + "wpe.weight"][:t]          # (T, D)
    embed = x.clone()
    hidden = []
    for l in range(c["n_layer"]):
        p = f"{pre}h.{l}."
        a = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = a @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]    # (T, 3D): q | k | v
        q, k, v = (y.view(t, nh, hd).transpose(0, 1) for y in qkv.split(d, dim=1))
        x = x + causal_attention(q, k, v) @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        m = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        m = gelu_new(m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])  # (T, F)
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        hidden.append(x.clone())
    logits = layer_norm(x, w[pre + "ln_f.weight"], w[pre + "ln_f.bias"], eps) @ w[pre + "wte.weight"].T
    return embed, hidden, logits


# ---------------------------------------------------------------- weights
# Scales keep activations O(1): projections get std 1/sqrt(fan_in) so q.k/sqrt(hd)
# is about N(0, 1) (softmax neither uniform nor one-hot); the residual branches
# are damped by 0.5; norm gains are 1 + N(0, 0.1^2); the embedding std 0.3 gives
# tied-head logits with std ~0.3*sqrt(D), spread but not one-hot.

class Init:
    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)

    def normal(self, shape, std, mean=0.0):
        return mean + std * torch.randn(*shape, generator=self.gen, dtype=torch.float64)

    def tokens(self, vocab, bos=None):
        ids = torch.randint(3, vocab, (N_TOKENS,), generator=self.gen).tolist()
        if bos is not None:
            ids[0] = bos
        return ids


def llama_weights(c, seed, qkv_bias=False):
    r = Init(seed)
    d, nh, nkv, f, v = (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"],
                        c["intermediate_size"], c["vocab_size"])
    hd = c.get("head_dim") or d // nh
    w = {"model.embed_tokens.weight": r.normal((v, d), 0.3)}              # (V, D)
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = r.normal((d,), 0.1, 1.0)
        w[p + "self_attn.q_proj.weight"] = r.normal((nh * hd, d), d ** -0.5)   # (H*hd, D)
        w[p + "self_attn.k_proj.weight"] = r.normal((nkv * hd, d), d ** -0.5)  # (KV*hd, D)
        w[p + "self_attn.v_proj.weight"] = r.normal((nkv * hd, d), d ** -0.5)  # (KV*hd, D)
        if qkv_bias:
            w[p + "self_attn.q_proj.bias"] = r.normal((nh * hd,), 0.3)
            w[p + "self_attn.k_proj.bias"] = r.normal((nkv * hd,), 0.3)
            w[p + "self_attn.v_proj.bias"] = r.normal((nkv * hd,), 0.3)
        w[p + "self_attn.o_proj.weight"] = r.normal((d, nh * hd), 0.5 * (nh * hd) ** -0.5)  # (D, H*hd)
        w[p + "post_attention_layernorm.weight"] = r.normal((d,), 0.1, 1.0)
        w[p + "mlp.gate_proj.weight"] = r.normal((f, d), d ** -0.5)       # (F, D)
        w[p + "mlp.up_proj.weight"] = r.normal((f, d), d ** -0.5)         # (F, D)
        w[p + "mlp.down_proj.weight"] = r.normal((d, f), f ** -0.5)       # (D, F)
    w["model.norm.weight"] = r.normal((d,), 0.1, 1.0)
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = r.normal((v, d), 2.0 * d ** -0.5)           # (V, D)
    return w, r.tokens(v, bos=1)


def gpt2_weights(c, seed, prefix="", save_lm_head=False, mask_buffers=False):
    r = Init(seed)
    d, f, v, n = c["n_embd"], c["n_inner"] or 4 * c["n_embd"], c["vocab_size"], c["n_positions"]
    w = {prefix + "wte.weight": r.normal((v, d), 0.3),                    # (V, D)
         prefix + "wpe.weight": r.normal((n, d), 0.1)}                    # (n_positions, D)
    for l in range(c["n_layer"]):
        p = f"{prefix}h.{l}."
        w[p + "ln_1.weight"] = r.normal((d,), 0.1, 1.0)
        w[p + "ln_1.bias"] = r.normal((d,), 0.05)
        if mask_buffers:  # old checkpoints carry the causal-mask buffer; loaders must skip it
            w[p + "attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.float64)).view(1, 1, n, n)
        w[p + "attn.c_attn.weight"] = r.normal((d, 3 * d), d ** -0.5)     # Conv1D (in D, out 3D)
        w[p + "attn.c_attn.bias"] = r.normal((3 * d,), 0.05)
        w[p + "attn.c_proj.weight"] = r.normal((d, d), 0.5 * d ** -0.5)   # (D, D)
        w[p + "attn.c_proj.bias"] = r.normal((d,), 0.05)
        w[p + "ln_2.weight"] = r.normal((d,), 0.1, 1.0)
        w[p + "ln_2.bias"] = r.normal((d,), 0.05)
        w[p + "mlp.c_fc.weight"] = r.normal((d, f), d ** -0.5)            # (D, F)
        w[p + "mlp.c_fc.bias"] = r.normal((f,), 0.05)
        w[p + "mlp.c_proj.weight"] = r.normal((f, d), 0.5 * f ** -0.5)    # (F, D)
        w[p + "mlp.c_proj.bias"] = r.normal((d,), 0.05)
    w[prefix + "ln_f.weight"] = r.normal((d,), 0.1, 1.0)
    w[prefix + "ln_f.bias"] = r.normal((d,), 0.05)
    if save_lm_head:  # tied: the same values under the head's name, as some exports write
        w["lm_head.weight"] = w[prefix + "wte.weight"]
    return w, r.tokens(v)


# ---------------------------------------------------------------- models

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output folder (created)")
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "..", "shared"),
                    help="the shared data folder holding tokenizers/ (default: ../shared beside the repo)")
    args = ap.parse_args()
    gpt2_tok = [os.path.join(args.shared, "tokenizers", "gpt2", n) for n in ("vocab.json", "merges.txt")]
    llama_tok = [os.path.join(args.shared, "tokenizers", "llama2", "tokenizer.model")]
    for p in gpt2_tok + llama_tok:
        if not os.path.isfile(p):
            sys.exit(f"make_hf_models.py: {p}: not found (pass --shared)")
    os.makedirs(args.out, exist_ok=True)
    done = os.path.join(args.out, "DONE")
    if os.path.exists(done):
        os.remove(done)
    gpt2_tc = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
               "add_bos_token": False}
    llama_tc = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                "add_bos_token": True}

    gpt2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 64, "n_layer": 2, "n_head": 4,
            "n_inner": None, "n_positions": 128, "n_ctx": 128, "vocab_size": 50257, "layer_norm_epsilon": 1e-5,
            "activation_function": "gelu_new", "tie_word_embeddings": True, "bos_token_id": 50256,
            "eos_token_id": 50256}
    w, toks = gpt2_weights(gpt2, seed=1, mask_buffers=True)
    write_folder(args.out, "gpt2", gpt2, w, torch.float32, toks, gpt2_tok, gpt2_tc)
    w, toks = gpt2_weights(gpt2, seed=2, prefix="transformer.", save_lm_head=True)
    write_folder(args.out, "gpt2-f16", gpt2, w, torch.float16, toks, gpt2_tok, gpt2_tc)

    llama = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
             "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4, "intermediate_size": 172,
             "vocab_size": 32000, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
             "tie_word_embeddings": True, "hidden_act": "silu", "rope_scaling": None, "attention_bias": False,
             "bos_token_id": 1, "eos_token_id": 2}
    w, toks = llama_weights(llama, seed=3)
    write_folder(args.out, "llama", llama, w, torch.float32, toks, llama_tok, llama_tc)
    write_folder(args.out, "llama-bf16", llama, w, torch.bfloat16, toks, llama_tok, llama_tc)
    write_folder(args.out, "llama-f16", llama, w, torch.float16, toks, llama_tok, llama_tc)
    write_folder(args.out, "llama-sharded", llama, w, torch.float32, toks, llama_tok, llama_tc, shards=2)

    qwen2 = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
             "vocab_size": 32000, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
             "tie_word_embeddings": False, "hidden_act": "silu", "use_sliding_window": False,
             "sliding_window": 4096, "bos_token_id": 1, "eos_token_id": 2}
    w, toks = llama_weights(qwen2, seed=4, qkv_bias=True)
    write_folder(args.out, "qwen2", qwen2, w, torch.float32, toks, llama_tok, llama_tc)

    # head_dim 16 with 8 heads: the attention width (128) differs from hidden_size (64).
    mistral = {"model_type": "mistral", "architectures": ["MistralForCausalLM"], "hidden_size": 64,
               "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 16,
               "intermediate_size": 96, "vocab_size": 32000, "max_position_embeddings": 1024,
               "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True, "hidden_act": "silu",
               "sliding_window": None, "bos_token_id": 1, "eos_token_id": 2}
    w, toks = llama_weights(mistral, seed=5)
    write_folder(args.out, "mistral", mistral, w, torch.float32, toks, llama_tok, llama_tc)

    with open(done, "w") as f:
        f.write("gpt2 gpt2-f16 llama llama-bf16 llama-f16 llama-sharded qwen2 mistral\n")


if __name__ == "__main__":
    main()
