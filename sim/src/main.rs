//! The `hmsim` command line; see [`sim::cli`].

fn main() {
    std::process::exit(sim::cli::main());
}
