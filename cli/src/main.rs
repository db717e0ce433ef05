fn main() {
    println!("northstar: not yet implemented");
}
