fn main() -> std::process::ExitCode {
    flightrec::cli::main()
}
