// Where Debian, Ubuntu, Fedora and source installs put the SoftHSM2 module. One list for
// build.rs (is SoftHSM installed?), the tests and the benchmark, included with `include!`.
&[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
]
