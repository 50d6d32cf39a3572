# SPDX-License-Identifier: MIT
# The toy family (test/families/bigram.hpp, one line in test/families/list.def) through the
# programs: hseq-train-toy trains it and writes a checkpoint, resumes from it, hseq-eval-toy
# reproduces the validation figure of the checkpoint, hseq-generate-toy samples from it
# (deterministically per seed), and --resume refuses flags of another family. The bigram's CSV log
# keeps the six columns of a model without loss terms. HAED trains its IEM phase (validated by its
# IEM loss, bpc nan), is resumed without repeating --phases (the checkpoint's schedule), and a
# --phases that disagrees with the checkpoint's on the steps trained is refused.
# Arguments: TRAIN, EVAL, GENERATE (programs), DATA (a text file), WORK_DIR.
cmake_minimum_required(VERSION 3.20)
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

include("${CMAKE_CURRENT_LIST_DIR}/../support/program_runs.cmake")  # run(), expect_ok()
function(bpc_of text pattern out_var)
  if(NOT text MATCHES "${pattern}([0-9.]+)")
    message(FATAL_ERROR "no '${pattern}<number>' in:\n${text}")
  endif()
  set(${out_var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

set(common --data "${DATA}" --batch 8 --context 32 --lr 0.1 --warmup 2 --eval-every 0 --eval-windows 8
           --sample-bytes 20 --threads 1)

run(help "${TRAIN}" --help)
expect_ok(help)
# FAMILIES: the registry's list as --help prints it (the sanitizer build registers the toy alone).
if(NOT help MATCHES "model family: ${FAMILIES} \\(default")
  message(FATAL_ERROR "hseq-train-toy --help does not list the bigram family:\n${help}")
endif()

run(first "${TRAIN}" --model bigram ${common} --steps 20 --out "${WORK_DIR}/a.safetensors" --csv "${WORK_DIR}/a.csv")
expect_ok(first)
file(STRINGS "${WORK_DIR}/a.csv" first_csv)
list(GET first_csv 0 first_header)
list(LENGTH first_csv first_rows)
if(NOT first_header STREQUAL "step,loss,bpc,val_bpc,seconds,tokens" OR NOT first_rows EQUAL 22)
  message(FATAL_ERROR "the bigram's CSV log has the header '${first_header}' and ${first_rows} lines (want the six columns, 20 steps and the final validation)")
endif()
if(NOT first MATCHES "model: bigram ")
  message(FATAL_ERROR "hseq-train-toy --model bigram did not build the bigram:\n${first}")
endif()
bpc_of("${first}" "validation bpc: " bpc_first)

run(resumed "${TRAIN}" ${common} --steps 60 --resume "${WORK_DIR}/a.safetensors" --out "${WORK_DIR}/b.safetensors")
expect_ok(resumed)
if(NOT resumed MATCHES "resuming at step 20" OR NOT resumed MATCHES "steps: 60 ")
  message(FATAL_ERROR "the resumed run did not continue from step 20 to 60:\n${resumed}")
endif()
bpc_of("${resumed}" "validation bpc: " bpc_resumed)
# 8 bits is the uniform prediction; the table learns, and keeps learning after the resume.
if(NOT bpc_first LESS 7.5 OR NOT bpc_resumed LESS bpc_first)
  message(FATAL_ERROR "validation bpc ${bpc_first} after 20 steps, ${bpc_resumed} after 60: not learning")
endif()

# hseq-eval on the same windows (the last 10%, 8 windows of 32 bytes) reports the same figure.
run(eval "${EVAL}" --checkpoint "${WORK_DIR}/b.safetensors" --data "${DATA}" --windows 8 --threads 1)
expect_ok(eval)
bpc_of("${eval}" "bpc: " bpc_eval)
if(NOT bpc_eval STREQUAL bpc_resumed)
  message(FATAL_ERROR "hseq-eval-toy reports ${bpc_eval}, hseq-train-toy reported ${bpc_resumed}:\n${eval}")
endif()

run(gen1 "${GENERATE}" --checkpoint "${WORK_DIR}/b.safetensors" --prompt "The " --bytes 40 --seed 3)
run(gen2 "${GENERATE}" --checkpoint "${WORK_DIR}/b.safetensors" --prompt "The " --bytes 40 --seed 3)
expect_ok(gen1)
expect_ok(gen2)
string(LENGTH "${gen1}" len)
if(NOT gen1 STREQUAL gen2 OR len LESS 20)
  message(FATAL_ERROR "hseq-generate-toy: seeded samples differ or are short:\n${gen1}\n---\n${gen2}")
endif()

run(wrong "${TRAIN}" --model transformer ${common} --steps 80 --resume "${WORK_DIR}/b.safetensors")
if("${wrong_rc}" STREQUAL "0" OR NOT wrong_err MATCHES "the checkpoint holds a bigram model but the flags ask for transformer")
  message(FATAL_ERROR "--resume of a bigram with --model transformer was not refused as such:\n${wrong}\n${wrong_err}")
endif()
# A family without phases refuses --phases by name; HAED (the hierarchical family) trains its IEM
# phase then its decoder phase through the same flag.
run(nophase "${TRAIN}" --model bigram ${common} --steps 4 --phases full:2,full)
if("${nophase_rc}" STREQUAL "0" OR NOT nophase_err MATCHES "--phases: the bigram family has no training phases")
  message(FATAL_ERROR "--phases on the bigram was not refused as such:\n${nophase}\n${nophase_err}")
endif()
# HAED's phases, where the registry has the hierarchical family (the sanitizer build registers the
# toy family alone).
if(FAMILIES MATCHES "hierarchical")
  # 4 steps of the IEM phase: no byte likelihood, so the validation reports the IEM loss.
  run(haed "${TRAIN}" --model hierarchical --dim 16 --heads 2 --layers 1 --decoder-layers 1 --iem-negatives 8
      --phases iem:6,decoder ${common} --steps 4 --out "${WORK_DIR}/haed.safetensors" --csv "${WORK_DIR}/haed.csv")
  expect_ok(haed)
  # The model declares its loss terms (kLossTerms): the CSV has a column for each, in every phase.
  file(STRINGS "${WORK_DIR}/haed.csv" haed_csv)
  list(GET haed_csv 0 haed_header)
  if(NOT haed_header STREQUAL "step,loss,bpc,val_bpc,seconds,tokens,ce,iem,val_ce,val_iem")
    message(FATAL_ERROR "HAED's CSV header is '${haed_header}', expected its loss terms' columns")
  endif()
  if(NOT haed MATCHES "model: hierarchical " OR NOT haed MATCHES "phases: iem:6,decoder\n" OR NOT haed MATCHES "steps: 4 "
     OR NOT haed MATCHES "validation bpc: nan\n" OR NOT haed MATCHES "validation loss terms \\(nats\\): iem [0-9]")
    message(FATAL_ERROR "HAED's IEM phase (--phases iem:6,decoder, 4 steps) did not report its IEM validation loss:\n${haed}")
  endif()
  if(NOT haed_err MATCHES "step 1/4 \\| loss [0-9.]+ \\| bpc nan \\| iem [0-9.]+ \\|")
    message(FATAL_ERROR "HAED's progress line does not show the IEM term:\n${haed_err}")
  endif()
  # Resumed without --phases (and without model flags): the checkpoint's schedule, into the decoder phase.
  run(haed_resumed "${TRAIN}" ${common} --steps 12 --resume "${WORK_DIR}/haed.safetensors")
  expect_ok(haed_resumed)
  if(NOT haed_resumed MATCHES "resuming at step 4" OR NOT haed_resumed MATCHES "phases: iem:6,decoder \\(the checkpoint's\\)"
     OR NOT haed_resumed MATCHES "steps: 12 ")
    message(FATAL_ERROR "HAED resumed without --phases did not continue the checkpoint's phases to step 12:\n${haed_resumed}")
  endif()
  bpc_of("${haed_resumed}" "validation bpc: " bpc_haed)
  run(haed_wrong "${TRAIN}" ${common} --steps 12 --resume "${WORK_DIR}/haed.safetensors" --phases iem:2,decoder)
  if("${haed_wrong_rc}" STREQUAL "0" OR NOT haed_wrong_err MATCHES
     "--phases 'iem:2,decoder' disagrees with the checkpoint's phases 'iem:6,decoder' on the 4 steps it has trained")
    message(FATAL_ERROR "--phases disagreeing with the checkpoint's was not refused as such:\n${haed_wrong}\n${haed_wrong_err}")
  endif()
endif()

message(STATUS "toy family: bpc ${bpc_first} -> ${bpc_resumed} (eval ${bpc_eval}); sample: ${gen1}")
