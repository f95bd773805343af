# What `cmake --install` puts into a prefix: libffnjit.so (versioned soname), the public
# headers, the CMake package (ffnjit::ffnjit) and a pkg-config file. Consumers of the
# shared library need nothing else: the C++ runtime, SQLite, nlohmann_json and NVRTC are
# linked into it (or are its own run-time NEEDED entries), so the package config finds
# no dependency. tests/consumer builds an app against an installed tree.
install(DIRECTORY include/ffnjit DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT devel)
install(EXPORT ffnjitTargets NAMESPACE ffnjit:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ffnjit COMPONENT devel)
include(CMakePackageConfigHelpers)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/ffnjitConfig.cmake
  "# ffnjit ${PROJECT_VERSION}: the imported target ffnjit::ffnjit (libffnjit.so and include/ffnjit).\n"
  "include(\${CMAKE_CURRENT_LIST_DIR}/ffnjitTargets.cmake)\n")
# 0.x: every minor release may change the ABI (its soname is libffnjit.so.0.MINOR).
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ffnjitConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ffnjitConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/ffnjitConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ffnjit COMPONENT devel)

# pkg-config: relative to the .pc file's own directory, so an installed tree can move.
set(FFNJIT_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH FFNJIT_PC_TO_PREFIX /prefix/${FFNJIT_PC_DIR} /prefix)
string(REGEX REPLACE "/$" "" FFNJIT_PC_TO_PREFIX "${FFNJIT_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/ffnjit.pc.in ${CMAKE_CURRENT_BINARY_DIR}/ffnjit.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ffnjit.pc DESTINATION ${FFNJIT_PC_DIR} COMPONENT devel)

# The Python wheel (python/pyproject.toml, scikit-build-core) installs component "python"
# only, which a plain `cmake --install` leaves out: the library under its soname (one
# file: a wheel cannot hold symlinks) and the CLI inside the package directory, stripped
# (`cmake --install --strip` strips install(TARGETS) only).
set(lib ffnjit/lib/libffnjit.so.${FFNJIT_SOVERSION})
install(FILES $<TARGET_FILE:ffnjit_shared> DESTINATION ffnjit/lib RENAME libffnjit.so.${FFNJIT_SOVERSION}
        COMPONENT python EXCLUDE_FROM_ALL)
install(PROGRAMS $<TARGET_FILE:ffnjit> DESTINATION ffnjit/bin COMPONENT python EXCLUDE_FROM_ALL)
install(CODE "
  foreach(f ${lib} ffnjit/bin/ffnjit)
    execute_process(COMMAND \"${CMAKE_STRIP}\" --strip-unneeded \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/\${f}\"
                    RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR \"strip \${f} failed\")
    endif()
  endforeach()" COMPONENT python EXCLUDE_FROM_ALL)
