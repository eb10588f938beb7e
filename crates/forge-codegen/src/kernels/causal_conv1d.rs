//! The `causal_conv1d` kernel family (templates/metal/causal_conv1d.metal.j2):
//! Mamba's depthwise causal convolution over time with its bias and SiLU,
//! for a prefill pass or one decode token, carrying the conv state.

use super::KernelInstance;

/// Kernel widths the template unrolls (every Mamba checkpoint uses 2 … 4;
/// the window stays in registers up to 8).
pub const KERNEL_WIDTHS: std::ops::RangeInclusive<u64> = 2..=8;

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
    assert!(
        KERNEL_WIDTHS.contains(&kernel),
        "causal_conv1d: kernel width {kernel} is outside 2..=8"
    );
    assert!(
        channels > 0 && x_stride >= channels,
        "causal_conv1d: {channels} channels in rows of {x_stride}"
    );
    let threads = channels.next_multiple_of(32).min(THREADS);
    let mut name = format!("causal_conv1d_{channels}_k{kernel}");
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
