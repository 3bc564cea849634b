#!/usr/bin/env bash
# thecalctl's bash completion (packaging/thecalctl.bash-completion) run through bash's own
# machinery: the real bash-completion (_init_completion, _filedir), the function that
# `complete -p thecalctl` names, COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT as bash sets
# them, and the words offered compared with what each command takes.
# usage: completion_test.sh SOURCE_DIR
set -uo pipefail
src=${1:?usage: completion_test.sh SOURCE_DIR}
bc=/usr/share/bash-completion/bash_completion
[[ -r $bc ]] || { echo "FAIL: $bc missing (package bash-completion, scripts/setup-deps)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A site library with names written in the ways YAML allows (quoted, commented), and
# aliases that must not be offered.
cat >"$work/drugs.yaml" <<'YAML'
version: 1
drugs:
  - name: morphine
    aliases: [morphine sulfate, Infumorph]
  - name: "bupivacaine"    # quoted
  - name: 'clonidine'
  -   name: ziconotide
YAML

# Each case: the command line up to the cursor (the last word is the one completed; a
# trailing space: an empty word), the words expected (sorted), and optionally the library.
fails=0
check() {
  local line=$1 want=$2 got
  got=$(THECALCTL_DRUG_LIBRARY=${3:-$work/drugs.yaml} bash --norc --noprofile -c '
    source "$1" >/dev/null 2>&1
    source "$2"
    line=$3
    read -ra COMP_WORDS <<<"$line"
    [[ $line == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE=$line
    COMP_POINT=${#line}
    spec=$(complete -p thecalctl) || { echo "no completion registered"; exit 1; }
    fn=${spec#*-F }; fn=${fn%% *}
    "$fn" thecalctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    ((${#COMPREPLY[@]})) && printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "
  ' _ "$bc" "$src/packaging/thecalctl.bash-completion" "$line" 2>&1)
  got=${got% }
  if [[ $got == "$want" ]]; then
    echo "ok   '$line' -> '$got'"
  else
    echo "FAIL '$line': got '$got', want '$want'"
    fails=$((fails + 1))
  fi
}

check "thecalctl history " "--drug"
check "thecalctl history --drug " "bupivacaine clonidine morphine ziconotide"
check "thecalctl history --drug b" "bupivacaine"
check "thecalctl --json history --drug m" "morphine"
check "thecalctl history --drug " "baclofen bupivacaine clonidine fentanyl hydromorphone morphine sufentanil ziconotide" \
  "$src/config/drugs.yaml"
check "thecalctl history --drug " "" "$work/no-such-library.yaml"
check "thecalctl preview x.yaml " "--days --svg --with-boluses"
check "thecalctl preview x.yaml --w" "--with-boluses"
check "thecalctl preview x.yaml --days " ""
check "thecalctl load x.yaml " "--yes"
check "thecalctl refill " "--prescription --withdrawn"
check "thecalctl refill --withdrawn 0 " "--prescription --withdrawn"
check "thecalctl revise-catheter " "--length --per-cm"
check "thecalctl revise-catheter --length 30 " "--length --per-cm"
check "thecalctl clinician-bolus 0.1 " "--over"
check "thecalctl recording " "now now-"
check "thecalctl recording now-2h n" "now now-"
check "thecalctl te" "test-alarm"
check "thecalctl fault occlusion " "off on"
check "thecalctl ack refill_" "refill_discrepancy refill_unfinished"
check "thecalctl --address " ""
# Files: a recording's third word, a prescription to load.
touch "$work/rx.yaml" "$work/notes.txt"
check "thecalctl recording now-1h now $work/n" "$work/notes.txt"
check "thecalctl load $work/r" "$work/rx.yaml"
check "thecalctl load $work/n" ""

[[ $fails -eq 0 ]] || { echo "$fails case(s) failed"; exit 1; }
echo "all cases passed"
