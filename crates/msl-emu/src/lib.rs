//! msl-emu: Metal Shading Language kernels on the CPU.
