//! `harness`: see the library's documentation and `harness --help`.

use clap::Parser;

fn main() {
    let cli = harness::cli::Cli::parse();
    match harness::cli::main(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
