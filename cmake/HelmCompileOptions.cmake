# Warning and sanitizer flags shared by every target of ours (not by imported ones).
add_library(helm_compile_options INTERFACE)
target_compile_options(helm_compile_options INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
  -Woverloaded-virtual -Wformat=2 -Wimplicit-fallthrough
  # Designated initializers that leave members at their defaults are intended here.
  -Wno-missing-field-initializers
  # GCC 12 reports std::string concatenations falsely (GCC bug 105329).
  -Wno-restrict)
if(HELM_WARNINGS_AS_ERRORS)
  target_compile_options(helm_compile_options INTERFACE -Werror)
endif()
if(HELM_SANITIZE)
  target_compile_options(helm_compile_options INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(helm_compile_options INTERFACE -fsanitize=address,undefined)
endif()
