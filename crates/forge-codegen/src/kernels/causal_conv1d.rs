//! The `causal_conv1d` kernel family (templates/metal/causal_conv1d.metal.j2):
//! Mamba's depthwise causal convolution over time with its bias and SiLU,
//! for a prefill pass or one decode token, carrying the conv state; and its
//! gated variant, LFM2's short convolution.

use super::KernelInstance;

/// Kernel widths the template handles (Mamba checkpoints use 2 … 4, LFM2
/// uses 3; the window is at most 31 floats of a thread's private memory).
pub const KERNEL_WIDTHS: std::ops::RangeInclusive<u64> = 2..=32;

const THREADS: u64 = 256;

/// Convolves `channels` channels with a `kernel`-tap filter. x rows are
/// `x_stride` floats apart (x is a column slice of the projection's rows).
/// Buffers: 0 x `[n, x_stride]`, 1 weight `float[channels, kernel]`, 2 out
/// `[n, channels]`, 3 bias `float[channels]` (with `bias`), 4 state
/// `float[kernel - 1, channels]`, 7 step. One thread per channel.
///
/// # Panics
/// When the kernel width is outside [`KERNEL_WIDTHS`] or x rows are
/// narrower than the channels.
pub fn causal_conv1d(channels: u64, kernel: u64, x_stride: u64, bias: bool) -> KernelInstance {
    instance("causal_conv1d", channels, kernel, x_stride, bias, false)
}

/// LFM2's gated short convolution: out = C · conv(B · x), no SiLU, where
/// B, x and C are column slices of the same projection rows. Buffers as
/// [`causal_conv1d`]'s (0 is x), plus 5 B and 6 C (`[n, x_stride]` each);
/// the state holds past products B · x.
///
/// # Panics
/// As [`causal_conv1d`].
pub fn gated_short_conv(channels: u64, kernel: u64, x_stride: u64, bias: bool) -> KernelInstance {
    instance("short_conv", channels, kernel, x_stride, bias, true)
}

fn instance(
    prefix: &str,
    channels: u64,
    kernel: u64,
    x_stride: u64,
    bias: bool,
    gated: bool,
) -> KernelInstance {
    assert!(
        KERNEL_WIDTHS.contains(&kernel),
        "causal_conv1d: kernel width {kernel} is outside 2..=32"
    );
    assert!(
        channels > 0 && x_stride >= channels,
        "causal_conv1d: {channels} channels in rows of {x_stride}"
    );
    let threads = channels.next_multiple_of(32).min(THREADS);
    let mut name = format!("{prefix}_{channels}_k{kernel}");
    if x_stride != channels {
        name += &format!("_stride{x_stride}");
    }
    if bias {
        name += "_bias";
    }
    KernelInstance {
        family: "causal_conv1d",
        name,
        params: serde_json::json!({
            "channels": channels,
            "kernel": kernel,
            "x_stride": x_stride,
            "bias": bias,
            "gated": gated,
        }),
        threads: [threads as u32, 1, 1],
        grid: [
            channels.div_ceil(threads).to_string(),
            "1".into(),
            "1".into(),
        ],
    }
}

/// Bytes of one layer's conv state.
pub fn state_bytes(channels: u64, kernel: u64) -> u64 {
    (kernel - 1) * channels * 4
}
