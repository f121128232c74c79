//! `cargo bench --bench gemm`: the GEMM table on the default adapter (same as `ser bench gemm`).

fn main() -> anyhow::Result<()> {
    let cfg = ser::bench::GemmBenchConfig {
        shapes: ser::bench::GemmShape::defaults(std::env::args().any(|a| a == "--quick")),
        kernels: ser::ops::gemm::GemmKernel::ALL.to_vec(),
        precisions: vec![ser::ops::gemm::Precision::F32, ser::ops::gemm::Precision::Bf16],
        warmup: 1,
        repeats: 5,
        budget_s: 3.0,
    };
    let gpu = ser::gpu::Gpu::new(&ser::gpu::AdapterSelector::default())?;
    let results = ser::bench::gemm_on(&gpu, &cfg, |r| {
        eprintln!("{:?}/{:?} {}x{}x{}: {:.2} GFLOP/s", r.kernel, r.precision, r.shape.m, r.shape.n, r.shape.k, r.gflops)
    })?;
    println!("{}", ser::bench::gemm_table(&results));
    Ok(())
}
