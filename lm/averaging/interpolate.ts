// Linear interpolation of two checkpoints, θ = α·θ_a + (1-α)·θ_b: the path the
// linear-mode-connectivity figure (Fig. 15) scores. Streams tensor by tensor like the
// averaging it sits beside.
import { SafetensorsWriter, type TensorSpec } from "../checkpoints/safetensors.ts";
import { blendInto, encodeFloats, numelOf } from "../checkpoints/dtypes.ts";
import { openAndCheck } from "./averaging.ts";

// Linear interpolation (linear mode connectivity).

/**
 * Write alpha * θ_a + (1 - alpha) * θ_b to `outPath`. Float tensors are combined in
 * float64 and written in a's dtype (or float32); integer tensors are copied from a.
 */
export async function interpolate(
  a: string,
  b: string,
  alpha: number,
  outPath: string,
  options: { dtype?: "source" | "float32"; metadata?: Record<string, string> } = {},
): Promise<void> {
  if (!Number.isFinite(alpha)) throw new Error(`interpolate: alpha must be finite, got ${alpha}`);
  const { layout, readers } = await openAndCheck([{ step: 0, path: a }, { step: 1, path: b }]);
  const [ra, rb] = [readers.get(0)!, readers.get(1)!];
  const specs: [string, TensorSpec][] = layout.map((t) => {
    const stored = ra.tensors.get(t.name)!.dtype;
    return [t.name, {
      dtype: t.isFloat && options.dtype === "float32" ? "F32" : stored,
      shape: t.shape,
    }];
  });
  const metadata = {
    format: "pt",
    method: "interpolate",
    alpha: String(alpha),
    a,
    b,
    ...options.metadata,
  };
  const writer = await SafetensorsWriter.create(outPath, specs, metadata);
  try {
    for (const [i, [name, spec]] of specs.entries()) {
      if (!layout[i].isFloat) {
        await writer.write(name, await ra.readBytes(name));
        continue;
      }
      const acc = new Float64Array(numelOf(spec.shape)); // (numel,) one tensor at a time
      blendInto(acc, await ra.readBytes(name), ra.tensors.get(name)!.dtype, 0, alpha);
      blendInto(acc, await rb.readBytes(name), rb.tensors.get(name)!.dtype, 1, 1 - alpha);
      await writer.write(name, encodeFloats(acc, spec.dtype));
    }
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    ra.close();
    rb.close();
  }
  await writer.close();
}
