fn main() {
    std::process::exit(shopnet::cli::main());
}
