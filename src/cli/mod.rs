//! Parts of the command line that main.rs flattens into its commands (the binary only: the
//! library has no clap).

pub mod model_flags;
