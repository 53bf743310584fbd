# Build helpers. Each folder of src/distbelief is one library, linked in the layering order of
# docs/design.md; dependencies point down only, and the build enforces it: a library's headers
# are reachable only through its own include root (build/include/<folder>/distbelief/<folder>, a
# link to the source folder), which a target sees only if it links that library. So an include
# that points up (ps/ including train/, say) fails to compile: "No such file or directory".

# dist_cc_library(FOLDER [SOURCES ...] [DEPS ...] [PRIVATE_DEPS ...])
#   FOLDER is the path under src/distbelief ("ps", "workloads/cat"); the target is
#   distbelief_<FOLDER with / as _>, e.g. distbelief_workloads_cat.
function(dist_cc_library folder)
  cmake_parse_arguments(L "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  string(REPLACE "/" "_" id "${folder}")
  set(name distbelief_${id})
  set(root ${PROJECT_BINARY_DIR}/include/${id})
  get_filename_component(parent "${root}/distbelief/${folder}" DIRECTORY)
  file(MAKE_DIRECTORY "${parent}")
  if(NOT EXISTS "${root}/distbelief/${folder}")
    file(CREATE_LINK "${PROJECT_SOURCE_DIR}/src/distbelief/${folder}" "${root}/distbelief/${folder}" SYMBOLIC)
  endif()
  if(L_SOURCES)
    add_library(${name} ${L_SOURCES})
    target_include_directories(${name} PUBLIC ${root})
    target_link_libraries(${name} PUBLIC ${L_DEPS} PRIVATE ${L_PRIVATE_DEPS})
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${root})
    target_link_libraries(${name} INTERFACE ${L_DEPS})
  endif()
endfunction()

# dist_cc_test(NAME SOURCES... DEPS... [LABELS l...] [PARTS "suffix|gtest filter|labels"...])
# A GoogleTest binary registered with CTest. Labels: "unit" (the default: fast, synthetic data),
# "data" (reads what scripts/setup.sh unpacks), "slow" (left out by scripts/test.sh --quick),
# "integration" (real processes). The sanitizer builds (scripts/sanitize.sh) run the "unit" tests.
# Each PART registers the tests its filter selects as NAME_suffix with its own labels (labels
# separated by commas); NAME itself runs the rest.
function(dist_cc_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LABELS;DEPS;PARTS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_DEPS} distbelief_testing GTest::gtest_main)
  set(labels unit)
  if(T_LABELS)
    set(labels ${T_LABELS})
  endif()
  set(rest "")
  foreach(part ${T_PARTS})
    string(REPLACE "|" ";" fields "${part}")
    list(GET fields 0 suffix)
    list(GET fields 1 filter)
    list(GET fields 2 part_labels)
    string(REPLACE "," ";" part_labels "${part_labels}")
    dist_register_test(${name}_${suffix} ${name} "--gtest_filter=${filter}" "${part_labels}")
    string(APPEND rest ":${filter}")
  endforeach()
  if(rest)
    dist_register_test(${name} ${name} "--gtest_filter=-${rest}" "${labels}")
  else()
    dist_register_test(${name} ${name} "" "${labels}")
  endif()
endfunction()

function(dist_register_test test binary filter labels)
  if(filter)
    add_test(NAME ${test} COMMAND ${binary} ${filter} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  else()
    add_test(NAME ${test} COMMAND ${binary} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  endif()
  set_tests_properties(${test} PROPERTIES LABELS "${labels}" TIMEOUT 900
    ENVIRONMENT "OMP_NUM_THREADS=${DISTBELIEF_TEST_THREADS};DISTBELIEF_ROOT=${PROJECT_SOURCE_DIR}")
endfunction()
