// Whether the webgpu tests run: they need a WebGPU adapter (on a machine without a GPU,
// Mesa's software Vulkan: Debian's mesa-vulkan-drivers). Without one they FAIL, unless
// LAWA_SKIP_WEBGPU=1 says to skip them, which is printed once with the reason.
import { requestWebgpuAdapter } from "../../lm/backend/webgpu.ts";

export const SKIP_WEBGPU_ENV = "LAWA_SKIP_WEBGPU";

async function decide(): Promise<boolean> {
  if (Deno.env.get(SKIP_WEBGPU_ENV) !== "1") return false;
  let why = "";
  try {
    await requestWebgpuAdapter();
  } catch (e) {
    why = ` (${(e as Error).message})`;
  }
  console.error(`skipping the webgpu tests: ${SKIP_WEBGPU_ENV}=1${why}`);
  return true;
}

/** True when the webgpu tests are to be skipped (only ever by explicit request). */
export const skipWebgpu: boolean = await decide();

/** Makes sure the WebGPU adapter is there, with an error that says what to install. */
export async function requireWebgpu(): Promise<void> {
  try {
    await requestWebgpuAdapter();
  } catch (e) {
    throw new Error(
      `${(e as Error).message}. The webgpu tests need an adapter (without a GPU: ` +
        `apt-get install mesa-vulkan-drivers); set ${SKIP_WEBGPU_ENV}=1 to skip them`,
    );
  }
}
