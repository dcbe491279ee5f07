// Training allocates and frees many same-sized tensor buffers per step; glibc's malloc
// hands the large ones back to the kernel each time (an mmap and a page fault per page),
// which cost about a sixth of a BERT training step. mimalloc keeps them for reuse.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(shopnet::cli::main());
}
