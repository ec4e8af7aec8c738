// mimalloc: the import analyzes on every core at once, and glibc's allocator spent a fifth of
// the CPU there (BENCHMARKS.md, ingest).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kizashi::cli::main()
}
