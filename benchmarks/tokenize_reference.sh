#!/usr/bin/env bash
# The reference Axolotl's `preprocess` on the inputs `benchmarks/tokenize.py --inputs DIR` wrote,
# so both frameworks tokenize the very same files with the same tokenizer on the same machine.
#
#   python benchmarks/tokenize.py --inputs /tmp/tk --repeats 1      # writes the inputs (and measures ours)
#   benchmarks/tokenize_reference.sh /path/to/venv-with-axolotl-0.21 /tmp/tk [chat2 chat50 alpaca]
#
# Prints, per workload, the seconds from the reference's "Tokenizing N examples" log line to its
# "min_input_len" line (its tokenization step, comparable to our `tokenize` column) and the whole
# command's wall seconds. The reference needs Python >= 3.12; install it with `pip install axolotl`
# into its own virtual environment (GPU-only dependencies can be left out for `preprocess`).
set -euo pipefail
venv=$1; inputs=$2; shift 2
workloads=("${@:-chat2 chat50 alpaca}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 AXOLOTL_DO_NOT_TRACK=1
export HF_HOME=$work/hf HF_DATASETS_CACHE=$work/datasets
for w in ${workloads[@]}; do
  template=""; kind=alpaca
  if [[ $w == chat* ]]; then template="chat_template: chatml"; kind=chat_template; fi
  cat > "$work/$w.yml" <<EOF
base_model: $inputs/tiny-model
learning_rate: 1e-4
micro_batch_size: 1
num_epochs: 1
sequence_len: 100000
dataset_num_proc: 2
output_dir: $work/out
dataset_prepared_path: $work/prepared-$w
$template
datasets:
  - path: $inputs/$w.jsonl
    type: $kind
    ds_type: json
EOF
  rm -rf "$work/datasets" "$work/prepared-$w"
  start=$(date +%s.%N)
  "$venv/bin/axolotl" preprocess "$work/$w.yml" > "$work/$w.log" 2>&1
  end=$(date +%s.%N)
  "$venv/bin/python" - "$work/$w.log" "$w" "$start" "$end" <<'PY'
import datetime, re, sys
log, name, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
lines = [line for line in re.split(r"[\r\n]", open(log, errors="replace").read()) if line.startswith("[20")]
stamp = lambda line: datetime.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
first = lambda pattern: next(stamp(line) for line in lines if re.search(pattern, line))
step = first(r"min_input_len") - first(r"Tokenizing \d+ examples|Tokenizing Prompts")
print(f"reference {name:<7} tokenize {step:6.2f} s   command {end - start:6.2f} s")
PY
done
