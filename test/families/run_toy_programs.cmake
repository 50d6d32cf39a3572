# SPDX-License-Identifier: MIT
# The toy family (test/families/bigram.hpp, one line in test/families/list.def) through the
# programs: hseq-train-toy trains it and writes a checkpoint, resumes from it, hseq-eval-toy
# reproduces the validation figure of the checkpoint, hseq-generate-toy samples from it
# (deterministically per seed), and --resume refuses flags of another family.
# Arguments: TRAIN, EVAL, GENERATE (programs), DATA (a text file), WORK_DIR.
cmake_minimum_required(VERSION 3.20)
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run out_var)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${out_var}_rc "${rc}" PARENT_SCOPE)
  set(${out_var}_err "${err}" PARENT_SCOPE)
endfunction()
function(expect_ok name)
  if(NOT "${${name}_rc}" STREQUAL "0")
    message(FATAL_ERROR "${name} failed (${${name}_rc}):\n${${name}}\n${${name}_err}")
  endif()
endfunction()
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
if(NOT help MATCHES "model family: transformer, hourglass, hierarchical, bigram")
  message(FATAL_ERROR "hseq-train-toy --help does not list the bigram family:\n${help}")
endif()

run(first "${TRAIN}" --model bigram ${common} --steps 20 --out "${WORK_DIR}/a.safetensors")
expect_ok(first)
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
run(haed "${TRAIN}" --model hierarchical --dim 16 --heads 2 --layers 1 --decoder-layers 1 --iem-negatives 8
    --phases iem:6,decoder ${common} --steps 12)
expect_ok(haed)
if(NOT haed MATCHES "model: hierarchical " OR NOT haed MATCHES "steps: 12 ")
  message(FATAL_ERROR "HAED with --phases iem:6,decoder did not train 12 steps:\n${haed}")
endif()
bpc_of("${haed}" "validation bpc: " bpc_haed)

message(STATUS "toy family: bpc ${bpc_first} -> ${bpc_resumed} (eval ${bpc_eval}); sample: ${gen1}")
