#!/usr/bin/env python3
"""Hugging Face transformers (PyTorch, fp16, CUDA) on the same checkpoint shaderlm runs, for
side-by-side numbers on the GPU machine.

  hf_reference.py compare --model DIR --ours OURS.json --ids 1,2,3 --gen 32
      OURS.json is the last line of `shaderlm logits --model DIR --ids ... --gen 32`; prints the
      largest relative logit difference at the last position and whether the greedy tokens agree.
  hf_reference.py speed --model DIR --prompt-len 512 --gen 128
      prefill tokens/s (one forward over the prompt) and decode tokens/s (generate with a static
      KV cache, eager attention, batch 1), as one JSON line.
"""
import argparse, json, sys, time

import torch
from transformers import AutoModelForCausalLM


def load(path):
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float16, attn_implementation="eager")
    return model.to("cuda").eval()


def compare(args):
    ours = json.loads(open(args.ours).read().strip().splitlines()[-1])
    ids = torch.tensor([[int(x) for x in args.ids.split(",")]], device="cuda")
    model = load(args.model)
    with torch.no_grad():
        ref = model(ids).logits[0, -1].float().cpu()
        out = model.generate(ids, max_new_tokens=args.gen, do_sample=False, min_new_tokens=args.gen,
                             eos_token_id=None, pad_token_id=0)
    greedy = out[0, ids.shape[1]:].tolist()
    mine = torch.tensor(ours["last_logits"])
    rel = ((mine - ref).abs().max() / ref.abs().max()).item()
    agree = 0
    for a, b in zip(greedy, ours["greedy"]):
        if a != b:
            break
        agree += 1
    print(json.dumps({"model": args.model, "max_rel_logit_diff": rel, "max_abs_logit_diff": (mine - ref).abs().max().item(),
                      "greedy_agree": agree, "greedy_len": len(greedy), "greedy_identical": greedy == ours["greedy"],
                      "hf_greedy": greedy, "ours_greedy": ours["greedy"]}))


def speed(args):
    model = load(args.model)
    torch.manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (1, args.prompt_len), device="cuda")
    sync = torch.cuda.synchronize
    with torch.no_grad():
        for _ in range(2):
            model(ids)
        sync()
        times = []
        for _ in range(5):
            t = time.perf_counter(); model(ids); sync(); times.append(time.perf_counter() - t)
        prefill = sorted(times)[2]
        kw = dict(do_sample=False, cache_implementation="static", eos_token_id=None, pad_token_id=0)
        model.generate(ids, max_new_tokens=args.gen, min_new_tokens=args.gen, **kw)  # warm-up
        sync()
        t = time.perf_counter(); model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw); sync()
        first = time.perf_counter() - t
        t = time.perf_counter(); model.generate(ids, max_new_tokens=args.gen, min_new_tokens=args.gen, **kw); sync()
        total = time.perf_counter() - t
    decode = (args.gen - 1) / max(total - first, 1e-9)
    print(json.dumps({"model": args.model, "impl": "transformers fp16 eager static-cache",
                      "prefill_tok_s": args.prompt_len / prefill, "ttft_ms": first * 1e3, "decode_tok_s": decode,
                      "torch": torch.__version__}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare"); c.add_argument("--model"); c.add_argument("--ours"); c.add_argument("--ids"); c.add_argument("--gen", type=int, default=32)
    s = sub.add_parser("speed"); s.add_argument("--model"); s.add_argument("--prompt-len", type=int, default=512); s.add_argument("--gen", type=int, default=128)
    a = p.parse_args()
    {"compare": compare, "speed": speed}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
