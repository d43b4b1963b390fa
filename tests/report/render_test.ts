// Tests of the Vega-Lite -> SVG -> PNG path: fonts are found (or a clear error names the
// package), text really is drawn, and PNG headers are read correctly.
import assert from "node:assert/strict";
import type { TopLevelSpec } from "vega-lite";
import {
  blankSvg,
  findFonts,
  inkPixels,
  pngSize,
  stripSvgText,
  svgSize,
  svgToPixels,
  svgToPng,
  vegaLiteToSvg,
} from "../../report/render.ts";

const SPEC: TopLevelSpec = {
  data: { values: [{ x: 1, y: 3.2 }, { x: 2, y: 3.0 }, { x: 3, y: 2.9 }] },
  mark: "line",
  encoding: {
    x: { field: "x", type: "quantitative", title: "training step" },
    y: { field: "y", type: "quantitative", title: "validation loss" },
  },
};

Deno.test("findFonts finds DejaVu Sans, or names the package to install", async () => {
  const fonts = await findFonts();
  assert.ok(fonts[0].endsWith("/DejaVuSans.ttf"));
  assert.ok((await Deno.stat(fonts[0])).size > 100_000);
  const empty = await Deno.makeTempDir();
  try {
    await assert.rejects(() => findFonts([empty]), /fonts-dejavu-core/);
  } finally {
    await Deno.remove(empty);
  }
});

Deno.test("vegaLiteToSvg renders axis titles as text in DejaVu Sans", async () => {
  const svg = await vegaLiteToSvg(SPEC);
  assert.match(svg, /^<svg/);
  assert.match(svg, /<text[^>]*>training step<\/text>/);
  assert.match(svg, /<text[^>]*>validation loss<\/text>/);
  assert.match(svg, /font-family="DejaVu Sans"/);
});

Deno.test("vegaLiteToSvg refuses to fetch data from a URL", async () => {
  const spec = { ...SPEC, data: { url: "https://example.com/data.json" } } as TopLevelSpec;
  await assert.rejects(() => vegaLiteToSvg(spec), /tried to fetch/);
});

Deno.test("svgToPng gives a valid PNG at the requested scale with visible text", async () => {
  const svg = await vegaLiteToSvg(SPEC);
  const { width, height } = svgSize(svg);
  const png = await svgToPng(svg, { scale: 2 });
  assert.deepEqual(pngSize(png), { width: Math.round(width * 2), height: Math.round(height * 2) });
  const blank = await svgToPng(blankSvg(width, height), { scale: 2 });
  assert.deepEqual(pngSize(blank), pngSize(png));
  assert.ok(png.length > blank.length * 2, `${png.length} vs blank ${blank.length}`);

  // Text adds dark pixels: compare with the same chart with its <text> removed.
  const full = await svgToPixels(svg, { scale: 1 });
  const bare = await svgToPixels(stripSvgText(svg), { scale: 1 });
  assert.equal(full.rgba.length, full.width * full.height * 4);
  assert.ok(inkPixels(full.rgba) > inkPixels(bare.rgba) + 300);
  const nothing = await svgToPixels(blankSvg(width, height), { scale: 1 });
  assert.equal(inkPixels(nothing.rgba), 0);
});

Deno.test("pngSize reads IHDR and rejects non-PNG bytes with a clear message", () => {
  const header = new Uint8Array([
    0x89,
    0x50,
    0x4e,
    0x47,
    0x0d,
    0x0a,
    0x1a,
    0x0a, // signature
    0,
    0,
    0,
    13,
    0x49,
    0x48,
    0x44,
    0x52, // IHDR length + type
    0,
    0,
    0x01,
    0x2c,
    0,
    0,
    0,
    0xc8, // width 300, height 200
  ]);
  assert.deepEqual(pngSize(header), { width: 300, height: 200 });
  assert.throws(() => pngSize(new TextEncoder().encode("<svg></svg> not a png at all"), "x.png"), {
    message: "x.png: not a PNG file (bad signature)",
  });
});
