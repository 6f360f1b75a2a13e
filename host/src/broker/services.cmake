# Host services behind the plugin host API: the plugins' key-value store, the event bus and
# timers. Included from this folder's CMakeLists.txt.
target_sources(helm_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/plugin_kv_store.cpp
  ${CMAKE_CURRENT_LIST_DIR}/event_bus.cpp
  ${CMAKE_CURRENT_LIST_DIR}/timer_service.cpp)
