fn main() {
    println!("northstar-relay: not yet implemented");
}
