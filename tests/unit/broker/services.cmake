# Tests of the plugin host services: event bus and timers (unit), key-value store (integration:
# it runs against an embedded PostgreSQL). Included from this folder's CMakeLists.txt.
include(GoogleTest)
add_executable(helm_broker_services_tests
  ${CMAKE_CURRENT_LIST_DIR}/event_bus_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/timer_service_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/plugin_kv_store_test.cpp)
target_link_libraries(helm_broker_services_tests
  PRIVATE helm_core helm_test_support GTest::gtest_main helm_compile_options)
gtest_discover_tests(helm_broker_services_tests TEST_FILTER "-PluginKvStore*"
                     PROPERTIES LABELS unit TIMEOUT 120)
gtest_discover_tests(helm_broker_services_tests TEST_FILTER "PluginKvStore*"
                     PROPERTIES LABELS integration TIMEOUT 300)
