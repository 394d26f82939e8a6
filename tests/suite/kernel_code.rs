//! The built `graft` binary's CPU kernels, read back from their machine code: every innermost
//! loop that multiply-adds (FMA) keeps its sums in registers.
//!
//! Why a test of machine code: the same source has compiled, in one build and not the next
//! (the crate's code split differently among codegen units after an unrelated change), into
//! an AVX2 matrix kernel that stored its 12 sums to the stack on every step of its loop —
//! half its speed on Zen 1, whose 256-bit stores take two cycles — and neither the unit tests
//! (the values were right) nor the timing harness (the machine's noise is as large) could
//! tell. Reads the disassembly with binutils' `objdump`, which the Rust linker's toolchain
//! brings.

use std::process::Command;

/// The functions checked: Graft's own kernels (closures and monomorphised copies included,
/// whose names hold their parents').
const KERNELS: &str = "graft::engine::fast_cpu::";

#[test]
fn kernel_loops_keep_their_sums_in_registers() {
    let binary = env!("CARGO_BIN_EXE_graft");
    // Only the span of the kernels' own code: the whole binary's disassembly is ~950 MB of
    // text and took objdump 55 s, the test suite's longest wait after training a detector;
    // the kernels lie together in ~10 MB of it (6 s).
    let (start, stop) = kernel_span(binary, KERNELS);
    let out = Command::new("objdump")
        .args([
            "-d",
            "-C",
            "--no-show-raw-insn",
            &format!("--start-address={start:#x}"),
            &format!("--stop-address={stop:#x}"),
            binary,
        ])
        .output()
        .expect("objdump (binutils) runs");
    assert!(out.status.success(), "objdump failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let report = fma_loops(&text, KERNELS);
    // The kernels exist in this binary and the reader found their loops (an x86-64 build
    // has dozens: matrix, depthwise, batch-norm kernels in AVX2 and AVX-512 forms).
    #[cfg(target_arch = "x86_64")]
    assert!(
        report.checked >= 20,
        "only {} FMA loops found",
        report.checked
    );
    assert!(
        report.in_memory.is_empty(),
        "kernel loops that store vector registers to the stack on every step:\n{}",
        report.in_memory.join("\n")
    );
}

/// The addresses from the first to the end of the last function whose name contains
/// `names`, from the binary's symbol table (`nm -C -S`: address, size, type, name).
fn kernel_span(binary: &str, names: &str) -> (u64, u64) {
    let out = Command::new("nm")
        .args(["-C", "-S", "--defined-only", binary])
        .output()
        .expect("nm (binutils) runs");
    assert!(out.status.success(), "nm failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut span: Option<(u64, u64)> = None;
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let (Some(addr), Some(size), Some(kind), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T") || !name.contains(names) {
            continue;
        }
        let (Ok(addr), Ok(size)) = (u64::from_str_radix(addr, 16), u64::from_str_radix(size, 16))
        else {
            continue;
        };
        span = Some(span.map_or((addr, addr + size), |(a, b)| {
            (a.min(addr), b.max(addr + size))
        }));
    }
    span.unwrap_or_else(|| panic!("no function of {names} in {binary}'s symbol table"))
}

/// What [`fma_loops`] found.
struct Report {
    /// Innermost loops with FMAs.
    checked: usize,
    /// Those that also store vector registers to the stack: `function: loop at ADDR`.
    in_memory: Vec<String>,
}

/// The innermost loops (a backward jump with no other backward jump inside it) of the
/// functions whose names contain `names`, in `objdump -d -C --no-show-raw-insn` output.
fn fma_loops(disassembly: &str, names: &str) -> Report {
    let mut report = Report {
        checked: 0,
        in_memory: Vec::new(),
    };
    let mut function: Option<(&str, Vec<(u64, &str)>)> = None;
    let mut finish = |function: Option<(&str, Vec<(u64, &str)>)>| {
        if let Some((name, insns)) = function {
            check_function(name, &insns, &mut report);
        }
    };
    for line in disassembly.lines() {
        // `0000000007afbb40 <graft::engine::...>:` starts a function.
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, name)| name)
        {
            finish(function.take());
            function = name.contains(names).then(|| (name, Vec::new()));
        } else if let Some((_, insns)) = function.as_mut()
            && let Some((addr, insn)) = line.trim_start().split_once(":\t")
            && let Ok(addr) = u64::from_str_radix(addr, 16)
        {
            insns.push((addr, insn.trim()));
        }
    }
    finish(function);
    report
}

fn check_function(name: &str, insns: &[(u64, &str)], report: &mut Report) {
    let index = |addr: u64| insns.binary_search_by_key(&addr, |&(a, _)| a).ok();
    // (the jump's index, its target's index) for each jump back within the function.
    let backward: Vec<(usize, usize)> = insns
        .iter()
        .enumerate()
        .filter_map(|(i, &(addr, insn))| {
            let target = jump_target(insn).filter(|&t| t < addr)?;
            Some((i, index(target)?))
        })
        .collect();
    for &(end, start) in &backward {
        if backward.iter().any(|&(j, _)| start <= j && j < end) {
            continue; // an outer loop
        }
        let body = &insns[start..=end];
        if !body.iter().any(|(_, insn)| insn.starts_with("vfmadd")) {
            continue;
        }
        report.checked += 1;
        if body.iter().any(|(_, insn)| stores_vector_to_stack(insn)) {
            let at = insns[start].0;
            report.in_memory.push(format!("{name}: loop at {at:x}"));
        }
    }
}

/// The address a jump (`jne 7afcc40 <...>`) goes to.
fn jump_target(insn: &str) -> Option<u64> {
    let (op, rest) = insn.split_once(char::is_whitespace)?;
    if !op.starts_with('j') {
        return None;
    }
    let target = rest.split_whitespace().next()?;
    u64::from_str_radix(target, 16).ok()
}

/// `vmovaps %ymm13,0x500(%rsp)` and the like: a vector register written to the stack.
fn stores_vector_to_stack(insn: &str) -> bool {
    let Some((op, operands)) = insn.split_once(char::is_whitespace) else {
        return false;
    };
    let (src, dst) = operands.trim().split_once(',').unwrap_or(("", ""));
    ["vmovaps", "vmovups", "vmovapd", "vmovupd"].contains(&op)
        && ["%xmm", "%ymm", "%zmm"].iter().any(|r| src.starts_with(r))
        && dst.ends_with("(%rsp)")
}

/// The reader on the loop that showed it (the AVX2 kernel's, its sums stored every step)
/// and on the same loop with the stores after it, where they belong.
#[test]
fn fma_loops_are_read_from_objdump_output() {
    let listing = |stores_inside: bool| {
        let mut text = String::from(
            "0000000000fe1e00 <graft::engine::fast_cpu::mm::avx2::multiply>:\n\
             \x20 fe1e40:\txor    %esi,%esi\n\
             \x20 fe1e50:\tvmovups -0x20(%rcx),%ymm15\n\
             \x20 fe1e55:\tvbroadcastss -0xc(%r10,%rsi,1),%ymm0\n\
             \x20 fe1e60:\tvfmadd231ps %ymm15,%ymm0,%ymm13\n",
        );
        if stores_inside {
            text += "  fe1e65:\tvmovaps %ymm13,0x580(%rsp)\n";
        }
        text += "  fe1f2a:\tadd    $0x18,%rsi\n\
                 \x20 fe1f31:\tcmp    %rsi,%r14\n\
                 \x20 fe1f34:\tjne    fe1e50 <graft::engine::fast_cpu::mm::avx2::multiply+0x50>\n\
                 \x20 fe1f36:\tvmovaps %ymm13,0x500(%rsp)\n\
                 \x20 fe1f3f:\tjmp    fe1e40 <graft::engine::fast_cpu::mm::avx2::multiply+0x40>\n\
                 \n\
                 0000000000fe2000 <other::function>:\n\
                 \x20 fe2000:\tvfmadd231ps %ymm1,%ymm0,%ymm2\n\
                 \x20 fe2005:\tvmovaps %ymm2,0x20(%rsp)\n\
                 \x20 fe200b:\tjne    fe2000 <other::function>\n";
        text
    };
    let bad = fma_loops(&listing(true), KERNELS);
    assert_eq!(bad.checked, 1, "the inner loop only, not the outer one");
    assert_eq!(
        bad.in_memory,
        ["graft::engine::fast_cpu::mm::avx2::multiply: loop at fe1e50"]
    );
    let good = fma_loops(&listing(false), KERNELS);
    assert_eq!((good.checked, good.in_memory.len()), (1, 0));
}
