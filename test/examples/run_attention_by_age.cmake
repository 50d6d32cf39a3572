# SPDX-License-Identifier: MIT
# bench/hseq_attention_by_age on checkpoints of hseq-train: a Compressive Transformer (mean pooling,
# rate 4) gives one CSV row per layer and age bucket plus the layers' mean, every bucket's rows
# and ages as the memories' sizes say, positive attention; a checkpoint of another family, or of
# another rate, is refused by name.
# Arguments: TRAIN, AGE (programs), DATA (a text file), WORK_DIR.
cmake_minimum_required(VERSION 3.20)
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

include("${CMAKE_CURRENT_LIST_DIR}/../support/program_runs.cmake")  # run(), expect_ok()

set(common --data "${DATA}" --batch 4 --context 16 --dim 16 --heads 2 --layers 2 --steps 5 --warmup 1 --eval-every 0
           --eval-windows 2 --sample-bytes 0 --threads 1)
run(ct "${TRAIN}" ${common} --model compressive --compress mean --rate 4 --mem-len 8 --cmem-len 6
    --out "${WORK_DIR}/ct.safetensors")
expect_ok(ct)
# Segments of 16: 8 memory rows, 6 compressed rows + the 4 compressed at each segment = 10 rows of
# 4 bytes; two buckets each.
run(age "${AGE}" --checkpoint "${WORK_DIR}/ct.safetensors" --data "${DATA}" --segment 16 --streams 2 --bytes 512
    --buckets 2 --threads 1)
expect_ok(age)
string(REPLACE "\n" ";" lines "${age}")
list(FILTER lines EXCLUDE REGEX "^$")
list(GET lines 0 header)
if(NOT header STREQUAL "layer,region,bucket,rows,first_age,last_age,attention")
  message(FATAL_ERROR "unexpected header '${header}' in:\n${age}")
endif()
list(LENGTH lines n)
if(NOT n EQUAL 16)  # header + (2 layers + all) x (2 compressed + 2 memory + 1 segment buckets)
  message(FATAL_ERROR "expected 15 rows, got:\n${age}")
endif()
foreach(want "all,compressed,0,5,48,32," "all,compressed,1,5,28,12," "all,memory,0,4,8,5," "all,memory,1,4,4,1,"
             "all,segment,0,16,0,0,")
  string(FIND "${age}" "\n${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "no row starting '${want}' in:\n${age}")
  endif()
endforeach()
list(REMOVE_AT lines 0)
foreach(line IN LISTS lines)
  if(NOT line MATCHES ",[0-9.e-]+$" OR line MATCHES ",0$" OR line MATCHES ",-")
    message(FATAL_ERROR "a bucket without positive attention: '${line}' in:\n${age}")
  endif()
endforeach()

# Refusals: another family, another rate.
run(lm "${TRAIN}" ${common} --model transformer --out "${WORK_DIR}/lm.safetensors")
expect_ok(lm)
run(bad "${AGE}" --checkpoint "${WORK_DIR}/lm.safetensors" --data "${DATA}")
if(bad_rc EQUAL 0 OR NOT bad_err MATCHES "not a compressive_transformer")
  message(FATAL_ERROR "a Transformer LM checkpoint was not refused by name:\n${bad}\n${bad_err}")
endif()
run(ct3 "${TRAIN}" ${common} --model compressive --compress mean --rate 3 --mem-len 8 --cmem-len 6
    --out "${WORK_DIR}/ct3.safetensors")
expect_ok(ct3)
run(bad3 "${AGE}" --checkpoint "${WORK_DIR}/ct3.safetensors" --data "${DATA}" --segment 16)
if(bad3_rc EQUAL 0 OR NOT bad3_err MATCHES "compression rate 3")
  message(FATAL_ERROR "a rate-3 checkpoint was not refused by name:\n${bad3}\n${bad3_err}")
endif()
