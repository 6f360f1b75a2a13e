# Every third-party dependency is found here, once, from Debian's packages.
find_package(Threads REQUIRED)
find_package(OpenSSL 3.0 REQUIRED)
find_package(CURL REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(sodium REQUIRED IMPORTED_TARGET libsodium>=1.0.18)
pkg_check_modules(pqxx REQUIRED IMPORTED_TARGET libpqxx>=6.4)
pkg_check_modules(libpq REQUIRED IMPORTED_TARGET libpq)

# Debian 12 ships Boost 1.74 and 1.81 side by side; insist on 1.81.
find_package(Boost 1.81.0 EXACT REQUIRED CONFIG)

# Beast and Asio are compiled once, in helm_boost_net, instead of in every translation unit.
add_library(helm_boost_net STATIC ${PROJECT_SOURCE_DIR}/cmake/boost_net.cpp)
target_compile_definitions(helm_boost_net PUBLIC
  BOOST_ASIO_SEPARATE_COMPILATION BOOST_BEAST_SEPARATE_COMPILATION
  BOOST_ASIO_NO_DEPRECATED BOOST_BEAST_USE_STD_STRING_VIEW)
target_link_libraries(helm_boost_net PUBLIC Boost::headers OpenSSL::SSL OpenSSL::Crypto Threads::Threads)

if(HELM_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(HELM_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()
