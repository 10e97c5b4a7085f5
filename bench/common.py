"""Shared helpers of the Python baselines in bench/ (loading, facts, threads).

Nothing here traces: baseline (a) reuses tests/reference/rome_reference.py's
Tracer, baseline (b) the PyPI package causal-tracer.
"""
import inspect
import json
import os
import platform
import sys

# Progress bars (transformers' loading, GGUF dequantisation) would bury the
# last line of stderr, which bench/python_baselines.sh shows as the reason
# of a failure.
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def die(msg, code=2):
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    sys.exit(code)


def choices(text, known, what):
    """A comma-separated list, each item one of `known` (else exit with a message)."""
    items = text.split(",")
    for item in items:
        if item not in known:
            die(f"unknown {what} {item!r}; known: {', '.join(known)}")
    return items


def add_common_args(p):
    p.add_argument("--model", default=DEFAULT_MODEL, help="Hugging Face checkpoint directory or .gguf file")
    p.add_argument("--data", default=None,
                   help="fact file: a JSON list of {prompt, subject} (default $KNOWTRACE_DATA_DIR/known_1000.json)")
    p.add_argument("--facts", type=int, default=10, help="trace the first N facts")
    p.add_argument("--samples", type=int, default=10, help="noise samples S")
    p.add_argument("--window", type=int, default=10, help="window of the mlp/attn mediators")
    p.add_argument("--noise", type=float, default=0.1, help="noise level (standard deviation, a number)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                   help="transformers attention implementation (sdpa = transformers' default)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up forward")


def facts_path(arg):
    if arg:
        return arg
    d = os.environ.get("KNOWTRACE_DATA_DIR")
    if not d:
        sib = os.path.join(ROOT, "..", "shared", "data")
        if os.path.isfile(os.path.join(sib, "known_1000.json")):
            d = sib
    if not d:
        die("no facts: give --data FILE or set KNOWTRACE_DATA_DIR to the folder of known_1000.json")
    return os.path.join(d, "known_1000.json")


def load_facts(arg, n):
    path = facts_path(arg)
    try:
        with open(path) as f:
            facts = json.load(f)
    except (OSError, ValueError) as e:
        die(f"{path}: {e}")
    if not isinstance(facts, list) or not facts:
        die(f"{path}: expected a non-empty JSON list of facts")
    for i, k in enumerate(facts[:n]):
        if not isinstance(k, dict) or "prompt" not in k or "subject" not in k:
            die(f"{path}: fact {i} has no prompt/subject")
    return path, facts[:n]


def setup_torch(args):
    """Threads, dtype and device, the way the C++ run gets them."""
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, DTYPES[args.dtype])
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        die("--device cuda but torch.cuda.is_available() is False")
    return torch, dtype, device


def load_model(path, dtype, device, attn):
    """transformers model + tokenizer from a checkpoint dir or a .gguf file."""
    import torch
    import transformers as tf
    if not os.path.exists(path):
        die(f"{path}: no such model (run scripts/get-model.sh smollm2-135m for the default)")
    tf.utils.logging.disable_progress_bar()  # keep stderr readable: its last line is the failure reason
    kw = {"attn_implementation": attn}
    tkw = {}
    if path.endswith(".gguf"):
        kw["gguf_file"] = tkw["gguf_file"] = os.path.basename(path)
        path = os.path.dirname(os.path.abspath(path))
        # transformers >= 5.2x keeps GGUF weights packed and unpacks them in
        # every forward unless told otherwise; knowtrace dequantises once at
        # load, so the baselines get the same dense model.
        if "dequantize" in inspect.signature(getattr(tf, "GgufConfig", lambda: None)).parameters:
            kw["quantization_config"] = tf.GgufConfig(dequantize=True)
    # transformers >= 4.56 calls it dtype, older releases torch_dtype.
    major, minor = (int(x) for x in tf.__version__.split(".")[:2])
    kw["dtype" if (major, minor) >= (4, 56) else "torch_dtype"] = dtype
    if device.type == "cuda":
        kw["device_map"] = str(device)  # straight onto the GPU (accelerate), no host copy
    model = tf.AutoModelForCausalLM.from_pretrained(path, **kw).eval().to(device)
    tok = tf.AutoTokenizer.from_pretrained(path, **tkw)
    return model, tok


def sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(torch, device):
    import transformers as tf
    env = {"torch": torch.__version__, "transformers": tf.__version__, "python": platform.python_version(),
           "threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    else:
        env["cpu"] = cpu_name()
    return env


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
