"""Two README blocks made from several files: the English-Chinese glossary (data/glossary.csv) and the
article's questions answered from the result files, in English and Chinese."""

from __future__ import annotations

import csv
import json
import pathlib

from tutorial_utils import stats

from render_common import ROOT, cpu_name
from render_deploy import deploy_runs


def glossary_table() -> str:
    """The English-Chinese glossary (data/glossary.csv) as a table: term, 中文, note."""
    with (ROOT / "data" / "glossary.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lines = ["| English | 中文 | 说明 |", "| --- | --- | --- |"]
    cell = lambda text: text.replace("|", "\\|")     # a bare | would end the cell (ECE's |acc - conf|)
    return "\n".join(lines + [f"| {cell(r['english'])} | {cell(r['chinese'])} | {cell(r['note'])} |" for r in rows])


ANSWER_LABELS = {   # key: (English, Chinese), side by side for translators
    "head": ("| what | measured | from |",
             "| 比较 | 测量结果 | 来源 |"),
    "smaller": ("{r:.1f}x smaller",
                "为后者的 1/{r:.1f}"),
    "against": ("against",
                "对比"),
    "bytes": ("bytes",
              "字节"),
    "faster": ("{low:.1f}x to {high:.1f}x faster",
               "速度为教师的 {low:.1f} 到 {high:.1f} 倍"),
    "distil": ("distillation: the 784-64-10 student's file against the reference teacher's",
               "蒸馏：784-64-10 学生的文件对比参考教师的文件"),
    "compress": ("compression on top: the final file against the distilled student's",
                 "在此之上压缩：最终文件对比蒸馏后学生的文件"),
    "both": ("both: the final file against the reference teacher's",
             "两者结合：最终文件对比参考教师的文件"),
    "accuracy": ("accuracy, {model} against the reference teacher, {threads} thread{plural}, paired by seed",
                 "准确率：{model}对比参考教师，{threads} 个线程，按种子配对"),
    "final_chain": ("final model",
                    "最终模型"),
    "narrow_chain": ("narrow 784-32-10 model (pipeline --narrow 0.5 --sparsity 0)",
                     "窄模型 784-32-10（pipeline --narrow 0.5 --sparsity 0）"),
    "paired": ("{mean:+.2f} ± {std:.2f} points (mean ± std over {n} seeds; 95% t interval {low:+.2f} to {high:+.2f}: {verdict})",
               "{mean:+.2f} ± {std:.2f} 个百分点（{n} 个种子的均值 ± 标准差；95% t 区间 {low:+.2f} 到 {high:+.2f}，{verdict}）"),
    "beyond": ("excludes zero",
               "不含零"),
    "within": ("includes zero",
               "含零，在噪声之内"),
    "final": ("final model (784-64-10, 90% sparse, 4 bits)",
              "最终模型（784-64-10，90% 稀疏，4 比特）"),
    "narrow": ("narrow 784-32-10 model (4 bits)",
               "窄模型 784-32-10（4 比特）"),
    "speed": ("speed: {label} in ONNX Runtime int8 (dynamic, static, or on the raw pixels) against the teacher in PyTorch eager, batch 256, 1 and 2 threads",
              "速度：{label}在 ONNX Runtime int8（动态、静态或直接输入原始像素）中对比 PyTorch 即时执行（eager）模式下的教师，批大小 256，1 和 2 个线程"),
    "file": ("{bytes:,}-byte .dcmp file",
             ".dcmp 文件 {bytes:,} 字节"),
    "colon": (": ",
              "："),
    "open": (" (",
             "（"),
    "close": (")",
              "）"),
    "comma": (", ",
              "，"),
}


def article_answers_table(results: pathlib.Path, language: str = "en") -> str:
    """What combining distillation and compression gained, from four result files (both READMEs' FAQ answers)."""
    t = {key: pair[("en", "zh").index(language)] for key, pair in ANSWER_LABELS.items()}   # en or zh, else ValueError
    one = json.loads((results / "pipeline.json").read_text())
    def row(document: dict, prefix: str) -> dict:
        return next(r for r in document["rows"] if r["stage"].startswith(prefix))

    reference, student = row(one, "reference teacher"), row(one, "student distilled")
    final = row(one, "4-bit QAT, sparse file + entropy coding")
    lines = [t["head"], "| --- | --- | --- |",
             f"| {t['distil']} | {student['bytes']:,} {t['against']} {reference['bytes']:,} {t['bytes']}{t['open']}"
             f"{t['smaller'].format(r=reference['bytes'] / student['bytes'])}{t['close']} | `pipeline.json` |",
             f"| {t['compress']} | {final['bytes']:,} {t['against']} {student['bytes']:,} {t['bytes']}{t['open']}"
             f"{t['smaller'].format(r=student['bytes'] / final['bytes'])}{t['close']} | `pipeline.json` |",
             f"| {t['both']} | {t['smaller'].format(r=reference['bytes'] / final['bytes'])} | `pipeline.json` |"]
    for model, threads, name in (("final_chain", 2, "pipeline-seeds.json"), ("final_chain", 1, "pipeline-seeds-threads1.json"),
                                 ("final_chain", 2, "pipeline-seeds-xeon.json"),
                                 ("final_chain", 1, "pipeline-seeds-xeon-threads1.json"),
                                 ("narrow_chain", 2, "pipeline-narrow-seeds.json"),
                                 ("narrow_chain", 1, "pipeline-narrow-seeds-threads1.json")):
        document = json.loads((results / name).read_text())
        cpu = cpu_name(document, language)
        ends = [row(document, "4-bit QAT, sparse file + entropy coding"), row(document, "reference teacher")]
        mean, std = stats.mean_std([100 * (a - b) for a, b in zip(ends[0]["accuracies"], ends[1]["accuracies"])])
        _, low, high = stats.paired_interval(ends[0]["accuracies"], ends[1]["accuracies"])
        paired = t["paired"].format(mean=mean, std=std, n=len(ends[0]["accuracies"]), low=100 * low, high=100 * high,
                                    verdict=t["within"] if low <= 0 <= high else t["beyond"])
        plural = "s" if threads > 1 and language == "en" else ""
        lines.append(f"| {t['accuracy'].format(model=t[model], threads=threads, plural=plural)}{t['comma']}{cpu} | "
                     f"{ends[0]['accuracy']:.2%} {t['against']} "
                     f"{ends[1]['accuracy']:.2%}{t['colon']}{paired} | `{name}` |")
    # scripts/bench_deploy.py: "final" is the chain's final model, "narrow" the structurally pruned 784-32-10 one;
    # one row per CPU it was run on (deploy.json, then deploy-<cpu>.json: the files with latencies)
    runs = deploy_runs(results)
    for model in ("final", "narrow"):
        for path, deploy in runs.items():
            speedups = [deploy["latency"][setting][f"{model}, ONNX Runtime int8-{kind}"]["speedup"]
                        for setting in deploy["latency"] if setting.endswith("batch 256")
                        for kind in ("dynamic", "static", "pixels")]
            lines.append(f"| {t['speed'].format(label=t[model])}{t['comma']}{cpu_name(deploy, language)} | "
                         f"{t['faster'].format(low=min(speedups), high=max(speedups))}{t['open']}"
                         f"{t['file'].format(bytes=deploy['bytes'][f'{model}, .dcmp file'])}{t['close']} | `{path.name}` |")
    return "\n".join(lines)
