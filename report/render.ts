// Turns a Vega-Lite spec into SVG and PNG, with no browser and no network:
//   Vega-Lite spec --vega-lite--> Vega spec --vega (headless View)--> SVG string
//   SVG --resvg--> PNG bytes
// resvg draws text only with fonts it has been given; with none it silently drops every
// label. So the DejaVu fonts (Debian package fonts-dejavu-core) are located at run time
// and loaded explicitly, and the charts ask for "DejaVu Sans" by name.
// `pngSize` is a hand-written IHDR reader (a dozen lines) so tests and checks can
// verify a PNG without an image-decoding dependency.
import * as vega from "vega";
import * as vegaLite from "vega-lite";
import type { Config, TopLevelSpec } from "vega-lite";
import { Resvg } from "@resvg/resvg-js";

/** A Vega-Lite spec, typed by vega-lite itself. */
export type VegaLiteSpec = TopLevelSpec;

export const FONT_FAMILY = "DejaVu Sans";
const FONT_FILES = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf"];
const FONT_DIRS = [
  "/usr/share/fonts/truetype/dejavu", // Debian, Ubuntu (fonts-dejavu-core)
  "/usr/share/fonts/dejavu", // Fedora, Arch
  "/usr/share/fonts/TTF",
  "/usr/local/share/fonts",
  "/usr/local/share/fonts/dejavu",
  "/opt/homebrew/share/fonts",
  "/Library/Fonts",
];

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Folders searched for the fonts: `$DEJAVU_FONT_DIR` first, then the usual system ones. */
export function defaultFontDirs(): string[] {
  const fromEnv = Deno.env.get("DEJAVU_FONT_DIR");
  const home = Deno.env.get("HOME");
  return [
    ...(fromEnv ? [fromEnv] : []),
    ...FONT_DIRS,
    ...(home ? [`${home}/.fonts`, `${home}/.local/share/fonts`] : []),
  ];
}

let cachedFonts: string[] | undefined;

/**
 * Paths of DejaVuSans.ttf (and DejaVuSans-Bold.ttf when present) in the first folder of
 * `dirs` that has them; throws a one-line error naming the package if none has.
 */
export async function findFonts(dirs?: string[]): Promise<string[]> {
  if (!dirs && cachedFonts) return cachedFonts;
  const searched = dirs ?? defaultFontDirs();
  for (const dir of searched) {
    const paths = FONT_FILES.map((f) => `${dir}/${f}`);
    const found = await Promise.all(paths.map(isFile));
    if (found[0]) {
      const fonts = paths.filter((_, i) => found[i]);
      if (!dirs) cachedFonts = fonts;
      return fonts;
    }
  }
  throw new Error(
    `DejaVu fonts not found (looked for ${FONT_FILES[0]} in ${searched.join(", ")}): ` +
      `install the Debian package fonts-dejavu-core (apt-get install fonts-dejavu-core) ` +
      `or set DEJAVU_FONT_DIR to a folder holding ${FONT_FILES.join(" and ")}`,
  );
}

/** Settings every chart shares: the font resvg has, a white background, readable sizes. */
export const BASE_CONFIG: Config = {
  font: FONT_FAMILY,
  background: "white",
  axis: { labelFontSize: 11, titleFontSize: 12, labelLimit: 420 },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 400, titleLimit: 400 },
  header: { labelFontSize: 12, titleFontSize: 12 },
  title: { fontSize: 14, anchor: "start" },
  view: { stroke: "#ddd" },
};

/** Compile Vega-Lite to Vega, render it headless, return the SVG text. */
export async function vegaLiteToSvg(spec: VegaLiteSpec): Promise<string> {
  const withConfig = {
    ...spec,
    config: { ...BASE_CONFIG, ...spec.config },
  } as TopLevelSpec;
  const compiled = vegaLite.compile(withConfig).spec;
  // A loader that refuses URLs: every chart carries its data inline. Vega only logs a
  // failed load, so the attempt is recorded and turned into an error after rendering.
  const fetched: string[] = [];
  const refuse = (uri: string) => {
    fetched.push(uri);
    return Promise.reject(new Error(`chart tried to fetch ${uri}`));
  };
  const loader = vega.loader();
  loader.sanitize = refuse;
  loader.load = refuse;
  const view = new vega.View(vega.parse(compiled), {
    renderer: "none",
    loader,
    logLevel: vega.None,
  });
  try {
    const svg = await view.toSVG();
    if (fetched.length) {
      throw new Error(`chart tried to fetch ${fetched.join(", ")}: data must be inline`);
    }
    return svg;
  } finally {
    view.finalize();
  }
}

export interface RenderOptions {
  /** Pixels per SVG unit (2 gives crisp figures for slides and the README). */
  scale?: number;
}

async function resvgFor(svg: string, opts: RenderOptions): Promise<Resvg> {
  const fontFiles = await findFonts();
  return new Resvg(svg, {
    font: {
      fontFiles,
      loadSystemFonts: false,
      defaultFontFamily: FONT_FAMILY,
      sansSerifFamily: FONT_FAMILY,
      serifFamily: FONT_FAMILY,
      monospaceFamily: FONT_FAMILY,
    },
    fitTo: { mode: "zoom", value: opts.scale ?? 2 },
    background: "white",
    logLevel: "off",
  });
}

/** Rasterise an SVG to PNG bytes with the DejaVu fonts. */
export async function svgToPng(svg: string, opts: RenderOptions = {}): Promise<Uint8Array> {
  const image = (await resvgFor(svg, opts)).render();
  return new Uint8Array(image.asPng());
}

/** Rasterise an SVG to raw RGBA pixels (row-major, 4 bytes per pixel). */
export async function svgToPixels(
  svg: string,
  opts: RenderOptions = {},
): Promise<{ width: number; height: number; rgba: Uint8Array }> {
  const image = (await resvgFor(svg, opts)).render();
  return { width: image.width, height: image.height, rgba: new Uint8Array(image.pixels) };
}

/** Count pixels that are clearly darker than the white background. */
export function inkPixels(rgba: Uint8Array, threshold = 200): number {
  let n = 0;
  for (let i = 0; i < rgba.length; i += 4) {
    if (Math.min(rgba[i], rgba[i + 1], rgba[i + 2]) < threshold) n++;
  }
  return n;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Width and height from a PNG's IHDR chunk; throws if the bytes are not a PNG. */
export function pngSize(bytes: Uint8Array, where = "PNG"): { width: number; height: number } {
  if (bytes.length < 24 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) {
    throw new Error(`${where}: not a PNG file (bad signature)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunkType = String.fromCharCode(...bytes.subarray(12, 16));
  if (chunkType !== "IHDR") throw new Error(`${where}: first chunk is ${chunkType}, expected IHDR`);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/** A chart of the given size with nothing drawn: the baseline a real figure must exceed. */
export function blankSvg(width: number, height: number): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}"><rect width="${width}" height="${height}" fill="white"/></svg>`;
}

/** The SVG with every <text> element removed (to show what text adds to a render). */
export function stripSvgText(svg: string): string {
  return svg.replace(/<text\b[^>]*>[\s\S]*?<\/text>/g, "");
}

/** The width and height attributes of an SVG's root element. */
export function svgSize(svg: string): { width: number; height: number } {
  const root = svg.match(/<svg\b[^>]*>/)?.[0] ?? "";
  const width = Number(root.match(/\swidth="([\d.]+)"/)?.[1]);
  const height = Number(root.match(/\sheight="([\d.]+)"/)?.[1]);
  if (!(width > 0) || !(height > 0)) throw new Error("SVG root has no width/height");
  return { width, height };
}
