"""Evaluation results as a markdown table and a recall-vs-rerank-depth PNG."""

from __future__ import annotations

from pathlib import Path

ROWS = (("dual", "dual encoder"), ("itm", "rerank ITM"), ("itm+itc", "rerank ITM+ITC"))
COLUMNS = (("text_to_image", "t2i"), ("image_to_text", "i2t"))
KS = ("R@1", "R@5", "R@10")


def markdown_table(result: dict) -> str:
    """One row per ranking (dual encoder, each rerank rule present), t2i and i2t R@1/5/10."""
    head = ["ranking"] + [f"{short} {k}" for _, short in COLUMNS for k in KS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key, label in ROWS:
        if key not in result:
            continue
        label = label if key == "dual" else f"{label} (top-{result['k']})"
        cells = [f"{result[key][direction][k]:.1f}" for direction, _ in COLUMNS for k in KS]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def plot_recall_vs_k(result: dict, png_path: str | Path, title: str = "") -> Path:
    """R@1 both ways against the rerank depth k, one line per rule; the dual encoder flat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (direction, short), style in zip(COLUMNS, ("-", "--"), strict=True):
        ax.axhline(result["dual"][direction]["R@1"], color="grey", linestyle=style, linewidth=1,
                   label=f"dual encoder {short}")
        for rule, curve in result.get("curve", {}).items():
            depths = sorted(curve, key=int)
            ax.plot([int(d) for d in depths], [curve[d][direction]["R@1"] for d in depths], style,
                    marker="o", label=f"{rule} {short}")
    ax.set(xscale="log", xlabel="rerank depth k", ylabel="R@1 (%)", title=title or "R@1 vs rerank depth",
           ylim=(0, 100))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
    return Path(png_path)
