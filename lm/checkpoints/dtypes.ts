// Tensor dtypes as safetensors names them, and the float conversions averaging needs:
// decode any float dtype into a float64 (or float32) accumulator, and encode sums back to
// F32, F16 or BF16 with the rounding torch uses. Kept apart from the file format
// (safetensors.ts) because the averaging arithmetic and the format change for different
// reasons.

export type DType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isFloatDType(dtype: DType): boolean {
  return dtype === "F64" || dtype === "F32" || dtype === "F16" || dtype === "BF16";
}

export function numelOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

// Float conversions. BF16 is the top half of an F32; F16 needs a real decode/encode.

let f16Table: Float32Array | null = null;

/** All 65536 F16 bit patterns decoded to F32 (built once, 256 KB). */
function f16DecodeTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = sign * mant * 2 ** -24;
    else if (exp === 31) table[h] = mant ? NaN : sign * Infinity;
    else table[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return (f16Table = table);
}

/** F32 bit pattern -> F16 bit pattern, round to nearest even (as numpy/torch do). */
export function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  const mant = f & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e >= 1) {
    let h = sign | (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // carry may reach inf: correct
    return h;
  }
  const shift = 126 - exp; // subnormal half: (1.mant) * 2^(exp-127) / 2^-24
  if (shift >= 25) return sign;
  const full = mant | 0x800000;
  let h = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (h & 1))) h++;
  return sign | h;
}

/** F32 bit pattern -> BF16 bit pattern, round to nearest even (as torch does). */
export function f32BitsToBf16Bits(u: number): number {
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff)) return ((u >>> 16) & 0x8000) | 0x7fc0;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

const CHUNK = 1 << 16;

/**
 * acc[i] = keep * acc[i] + take * x[i] for the float tensor `x` stored as `bytes` in
 * `dtype`. The one kernel of every averaging method; `bytes` must start 8-aligned.
 */
export function blendInto(
  acc: Float64Array | Float32Array,
  bytes: Uint8Array,
  dtype: DType,
  keep: number,
  take: number,
): void {
  const n = acc.length;
  if (bytes.length !== n * DTYPE_BYTES[dtype]) {
    throw new Error(`blendInto: ${bytes.length} bytes of ${dtype} do not hold ${n} values`);
  }
  if (dtype === "F32" || dtype === "F64") {
    const x = dtype === "F32"
      ? new Float32Array(bytes.buffer, bytes.byteOffset, n)
      : new Float64Array(bytes.buffer, bytes.byteOffset, n);
    if (keep === 1 && take === 1) { for (let i = 0; i < n; i++) acc[i] += x[i]; }
    else if (keep === 1 && take === -1) { for (let i = 0; i < n; i++) acc[i] -= x[i]; }
    else if (keep === 0 && take === 1) acc.set(x);
    else for (let i = 0; i < n; i++) acc[i] = keep * acc[i] + take * x[i];
    return;
  }
  if (dtype === "BF16") {
    const h = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    const scratch = new Float32Array(Math.min(CHUNK, n));
    const bits = new Uint32Array(scratch.buffer);
    for (let start = 0; start < n; start += CHUNK) {
      const m = Math.min(CHUNK, n - start);
      for (let j = 0; j < m; j++) bits[j] = h[start + j] << 16;
      for (let j = 0; j < m; j++) acc[start + j] = keep * acc[start + j] + take * scratch[j];
    }
    return;
  }
  if (dtype === "F16") {
    const h = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    const table = f16DecodeTable();
    for (let i = 0; i < n; i++) acc[i] = keep * acc[i] + take * table[h[i]];
    return;
  }
  throw new Error(`blendInto: ${dtype} is not a float dtype`);
}

/** Decode any float tensor's bytes to a fresh Float32Array. */
export function decodeToF32(bytes: Uint8Array, dtype: DType): Float32Array {
  const n = bytes.length / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  blendInto(out, aligned, dtype, 0, 1);
  return out;
}

/**
 * Encode float values as `dtype` bytes, scaling each by `scale` first. F64 -> F32 rounds
 * to nearest (Float32Array.set); F16/BF16 then round the F32 to nearest even, the same
 * two-stage rounding torch uses for a float64 -> half conversion. The bytes land in
 * `into` when it is large enough (avoids a fresh allocation per tensor), else in a new buffer.
 */
export function encodeFloats(
  values: Float64Array | Float32Array,
  dtype: DType,
  scale = 1,
  into?: ArrayBuffer,
): Uint8Array {
  const n = values.length;
  const nbytes = n * DTYPE_BYTES[dtype];
  const buffer = into && into.byteLength >= nbytes ? into : new ArrayBuffer(nbytes);
  if (dtype === "F64" || dtype === "F32") {
    const out = dtype === "F64" ? new Float64Array(buffer, 0, n) : new Float32Array(buffer, 0, n);
    if (scale === 1) out.set(values);
    else for (let i = 0; i < n; i++) out[i] = values[i] * scale;
    return new Uint8Array(buffer, 0, nbytes);
  }
  if (dtype !== "BF16" && dtype !== "F16") {
    throw new Error(`encodeFloats: ${dtype} is not a float dtype`);
  }
  const out = new Uint16Array(buffer, 0, n);
  const f32 = new Float32Array(Math.min(CHUNK, n));
  const bits = new Uint32Array(f32.buffer);
  for (let start = 0; start < n; start += CHUNK) {
    const m = Math.min(CHUNK, n - start);
    for (let j = 0; j < m; j++) f32[j] = values[start + j] * scale;
    if (dtype === "BF16") {
      for (let j = 0; j < m; j++) out[start + j] = f32BitsToBf16Bits(bits[j]);
    } else for (let j = 0; j < m; j++) out[start + j] = f32BitsToF16Bits(bits[j]);
  }
  return new Uint8Array(buffer, 0, nbytes);
}
