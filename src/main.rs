//! `graft`: with no arguments, the designer window; with a subcommand, headless work.

use clap::Parser;
use graft::cli::{Cli, run};
use std::process::ExitCode;

// Activations of a batch are tens to hundreds of MB, allocated and freed at every op. glibc
// maps and unmaps each one, so every op pays page faults on fresh memory; mimalloc keeps the
// pages (measured in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (`mi_option_purge_delay` in mimalloc.h).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Never hand freed pages back to the OS: the next batch needs them again at once, and
    // re-faulting them cost a third of training time (docs/BENCHMARKS.md). Like PyTorch's
    // caching allocator, the peak stays reserved.
    // SAFETY: setting an option before any allocation-heavy work; mimalloc reads it lazily.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = Cli::parse();
    if let Err(e) = graft::cli::set_input_size(cli.input_size) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let Some(command) = cli.command else {
        return window(cli);
    };
    // Never a raw panic for the user: a bug deep in a dependency becomes one error line.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown");
        // `graft inspect m.onnx | head` closing the pipe is not a failure.
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal failure: {msg}{at}");
    }));
    match std::panic::catch_unwind(|| run(command)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// No subcommand: the designer window. A gallery name for --model is downloaded here, with a
/// progress bar on the terminal, before the window opens.
#[cfg(feature = "window")]
fn window(cli: Cli) -> ExitCode {
    let model = match cli.model.as_deref().map(graft::cli::model_path).transpose() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = graft::app::StartOptions {
        project: cli.project,
        fresh: cli.fresh,
        screenshots: cli.screenshots,
        ephemeral: false,
        frame_bench: cli.frame_bench,
        model,
        data: cli.data,
        builtin_file_dialog: std::env::var("GRAFT_FILE_DIALOG").is_ok_and(|v| v == "builtin"),
        hide_frame_time: false,
        gallery: None,
        input_size: cli.input_size,
    };
    match graft::app::run(start) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A build without the window (`--no-default-features`): the command line only.
#[cfg(not(feature = "window"))]
fn window(_cli: Cli) -> ExitCode {
    eprintln!("error: this graft was built without the window; run `graft --help` for commands");
    ExitCode::FAILURE
}
