# %% [markdown]
# # Tracing one fact from Python
#
# knowtrace's engine inside a notebook: load SmolLM2, ask it a question,
# trace where the answer comes from, draw the heatmap. (A jupytext
# "percent" script: open it as a notebook with `jupytext --to notebook`, or
# run it: `python3 examples/trace_a_fact.py --out eiffel.png`.)

# %%
import argparse
import os

import knowtrace as kt

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
parser.add_argument("--out", default="eiffel_hidden.png")
parser.add_argument("--samples", type=int, default=10)
args = parser.parse_args()

model = kt.load(args.model)
print(model)

# %% What does the model answer?
prompt, subject = "The Eiffel Tower is located in the city of", "The Eiffel Tower"
for row in model.predict(prompt, top_k=3):
    print(f"{row['prob']:.3f}  {row['token']!r}")

# %% Causal trace: every mediator, ROME's settings (noise 3 x the subjects' std).
traces = model.trace(prompt, subject, samples=args.samples)
hidden = traces["hidden"]  # ROME's calculate_hidden_flow dict
print("answer", repr(hidden["answer"]), "high", float(hidden["high_score"]), "low", hidden["low_score"])
print("noise", traces["_meta"]["noise_level"], "from", traces["_meta"]["noise_source"])

# %% The heatmap: p(answer) with each (token, layer) hidden state restored.
import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt

scores = hidden["scores"].numpy()
b, e = hidden["subject_range"]
labels = [t + ("*" if b <= i < e else "") for i, t in enumerate(hidden["input_tokens"])]
fig, ax = plt.subplots(figsize=(4, 3), dpi=150)
im = ax.pcolor(scores, cmap="Purples", vmin=hidden["low_score"])
ax.invert_yaxis()
ax.set_yticks([0.5 + i for i in range(len(labels))])
ax.set_yticklabels(labels)
ax.set_xlabel(f"single restored layer within {os.path.basename(args.model)}")
ax.set_title("Impact of restoring the hidden state")
fig.colorbar(im).ax.set_title(f"p({hidden['answer'].strip()})", fontsize=8)
fig.savefig(args.out, bbox_inches="tight")
print("wrote", args.out)
