# dist_cc_test(NAME SOURCES... [LABELS l]): a GoogleTest binary registered with CTest.
# Tests labelled "slow" are left out of the default run (scripts/test.sh runs them in CI).
function(dist_cc_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LABELS;DEPS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE distbelief_core distbelief_testing GTest::gtest_main ${T_DEPS})
  add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set(labels unit)
  if(T_LABELS)
    set(labels ${T_LABELS})
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT 900
    ENVIRONMENT "OMP_NUM_THREADS=2;DISTBELIEF_ROOT=${PROJECT_SOURCE_DIR}")
endfunction()
