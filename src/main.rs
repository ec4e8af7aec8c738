fn main() -> std::process::ExitCode {
    kizashi::cli::main()
}
