//! The `ser` command line.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use ser::bench::{self, GemmBenchConfig, GemmShape};
use ser::gpu::{self, AdapterSelector, BackendChoice};
use ser::ops::gemm::GemmKernel;

#[derive(Parser)]
#[command(name = "ser", version, about = "Speech emotion recognition as a GPU-native compute pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which adapter to run on. Flags win over WGPU_ADAPTER_NAME and WGPU_BACKEND.
#[derive(Args, Clone, Debug)]
struct AdapterArgs {
    /// Case-insensitive substring of the adapter name (see `ser devices`).
    #[arg(long)]
    adapter: Option<String>,
    /// Graphics API to use.
    #[arg(long, value_enum)]
    backend: Option<BackendChoice>,
}

impl AdapterArgs {
    fn selector(&self) -> AdapterSelector {
        AdapterSelector { name: self.adapter.clone(), backend: self.backend }
    }
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu finds, best first.
    Devices {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure kernel throughput.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// GEMM GFLOP/s by kernel shape, size and adapter (timestamp queries where available).
    Gemm {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Run on every adapter present instead of one.
        #[arg(long)]
        all_adapters: bool,
        /// Sizes as MxNxK or S (square); default: squares 128-1024 and CNN layer shapes.
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<String>,
        /// Kernel shapes to try (default: all).
        #[arg(long, value_enum, value_delimiter = ',')]
        kernels: Vec<GemmKernel>,
        /// Timed repeats per cell (median reported).
        #[arg(long, default_value_t = 7)]
        repeats: usize,
        /// Untimed runs before timing.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Smaller default sizes.
        #[arg(long)]
        quick: bool,
        /// Print JSON lines instead of a markdown table.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devices { json } => devices(json),
        Command::Bench { what: BenchCommand::Gemm { adapter, all_adapters, sizes, kernels, repeats, warmup, quick, json } } => {
            let shapes = if sizes.is_empty() {
                GemmShape::defaults(quick)
            } else {
                sizes.iter().map(|s| GemmShape::parse(s)).collect::<Result<_>>()?
            };
            let kernels = if kernels.is_empty() { GemmKernel::ALL.to_vec() } else { kernels };
            let selectors: Vec<AdapterSelector> = if all_adapters {
                gpu::list_adapters()
                    .into_iter()
                    .map(|a| AdapterSelector { name: Some(a.name), backend: backend_of(&a.backend) })
                    .collect()
            } else {
                vec![adapter.selector()]
            };
            if selectors.is_empty() {
                anyhow::bail!("no GPU adapter found. {}", gpu::NO_ADAPTER_HELP);
            }
            let cfg = GemmBenchConfig { shapes, kernels, warmup, repeats, budget_s: 3.0 };
            let results = bench::gemm_all(&selectors, &cfg, |r| {
                if json {
                    println!("{}", serde_json::to_string(r).unwrap());
                } else {
                    eprintln!(
                        "{:<28} {:<8} {:>5}x{:<5}x{:<5} {:>9.3} ms {:>8.2} GFLOP/s",
                        r.adapter, format!("{:?}", r.kernel), r.shape.m, r.shape.n, r.shape.k, r.median_ms, r.gflops
                    );
                }
            })?;
            if !json {
                println!("{}", bench::gemm_table(&results));
            }
            Ok(())
        }
    }
}

fn backend_of(name: &str) -> Option<BackendChoice> {
    match name {
        "vulkan" => Some(BackendChoice::Vulkan),
        "gl" => Some(BackendChoice::Gl),
        "metal" => Some(BackendChoice::Metal),
        "dx12" => Some(BackendChoice::Dx12),
        _ => None,
    }
}

fn devices(json: bool) -> Result<()> {
    let adapters = gpu::list_adapters();
    if adapters.is_empty() {
        anyhow::bail!("no GPU adapter found. {}", gpu::NO_ADAPTER_HELP);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&adapters)?);
        return Ok(());
    }
    for a in &adapters {
        println!("[{}] {} ({}, {})", a.index, a.name, a.backend, a.device_type);
        println!("    driver:      {} {}", a.driver, a.driver_info);
        println!("    subgroup:    {}..{}", a.subgroup_size.0, a.subgroup_size.1);
        println!("    features:    {}", if a.features.is_empty() { "none of timestamp-query, shader-f16, subgroup".into() } else { a.features.join(", ") });
        let l = &a.limits;
        println!(
            "    limits:      buffer {} MiB, storage binding {} MiB, {} storage buffers/stage, {} workgroups/dim, {} invocations/workgroup, {} B workgroup memory",
            l.max_buffer_size >> 20,
            l.max_storage_buffer_binding_size >> 20,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size
        );
    }
    Ok(())
}
