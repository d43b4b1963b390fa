// The `plot` step: reads the results the upstream instances wrote to DuckDB and writes,
// for each figure of the catalogue (report/figures/), a Vega-Lite spec, an SVG, a PNG and
// the plotted data as CSV; tables as markdown and HTML; and one offline report.html.
// Only rows of the instances it was given are read, so every figure traces to its params.
import { z } from "zod";
import { defineStep, type InputRef, type InputValue } from "../pipeline/step.ts";
import { FIGURE_IDS, figureById, FigureScope, toCsv } from "../report/figures/index.ts";
import { BASE_CONFIG, svgToPng, vegaLiteToSvg } from "../report/render.ts";
import { buildReport, type ReportFigure, tableToHtml, tableToMarkdown } from "../report/html.ts";

const VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/** A folder name under figures/: never "." or ".." (publishing replaces the folder). */
const PUBLISH_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

export const PlotParams = z.object({
  /** Figure ids to draw; absent = every figure that has data (others skipped with a notice). */
  figures: z.array(z.string()).optional(),
  /** Report title; defaults to the pipeline name. */
  title: z.string().optional(),
  /** Pipeline name: names the report (the run publishes to artifacts/figures/<its name>/). */
  pipeline: z.string().regex(
    PUBLISH_NAME,
    "letters, digits, '.', '_' or '-', not starting with '.'",
  ).default("pipeline"),
  /** PNG pixels per SVG unit. */
  png_scale: z.number().positive().max(8).default(2),
}).superRefine((p, ctx) => {
  for (const id of p.figures ?? []) {
    if (!FIGURE_IDS.includes(id)) {
      ctx.addIssue({
        code: "custom",
        path: ["figures"],
        message: `unknown figure "${id}": expected one of ${FIGURE_IDS.join(", ")}`,
      });
    }
  }
});
export type PlotParams = z.infer<typeof PlotParams>;

function asList(value: InputValue | undefined): InputRef[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

export const plotStep = defineStep({
  name: "plot",
  module: import.meta.url,
  params: PlotParams,
  inputs: ["evals"],
  // Drawing reads finished results only: the tfjs backend and the seed cannot change it.
  uses: { backend: false, seed: false },
  // Published under the running pipeline's name (a derived config or a `--set` run gets
  // its own folder), falling back to the `pipeline` param outside the command line.
  publish: async (entryDir, params, artifactsDir, run) => {
    const dest = `${artifactsDir}/figures/${run?.pipeline ?? params.pipeline}`;
    await publishFigures(entryDir, dest);
    return `${dest}/report.html`;
  },
  async run(ctx, params, inputs) {
    const refs = asList(inputs.evals);
    if (refs.length === 0) {
      throw new Error(
        `plot (${ctx.node}): input "evals" is empty: expected evaluate/train/savings/lmc instances`,
      );
    }
    const scope = new FigureScope((sql) => ctx.results.query(sql), refs);
    const requested = params.figures !== undefined;
    const wanted = params.figures ?? FIGURE_IDS;
    await Deno.mkdir(`${ctx.outDir}/tables`, { recursive: true });

    const figures: ReportFigure[] = [];
    const skipped: { id: string; reason: string }[] = [];
    ctx.progress.start("plot", wanted.length, "fig");
    for (const [i, id] of wanted.entries()) {
      const def = figureById(id);
      const built = await def.build(scope, requested);
      if ("skip" in built) {
        if (requested) {
          throw new Error(
            `plot (${ctx.node}): figure "${id}" was requested but has no data: ${built.skip} ` +
              `(inputs: ${refs.map((r) => r.node).join(", ")})`,
          );
        }
        ctx.progress.log(`plot: skipped ${id}: ${built.skip}`);
        skipped.push({ id, reason: built.skip });
        ctx.progress.update(i + 1, `skipped ${id}`);
        continue;
      }
      const spec = { $schema: VEGA_LITE_SCHEMA, ...built.spec, config: BASE_CONFIG };
      const svg = await vegaLiteToSvg(spec);
      const files = [`${id}.png`, `${id}.svg`, `${id}.vl.json`, `${id}.csv`];
      await Deno.writeTextFile(`${ctx.outDir}/${id}.vl.json`, JSON.stringify(spec, null, 1) + "\n");
      await Deno.writeTextFile(`${ctx.outDir}/${id}.svg`, svg);
      await Deno.writeFile(
        `${ctx.outDir}/${id}.png`,
        await svgToPng(svg, { scale: params.png_scale }),
      );
      await Deno.writeTextFile(`${ctx.outDir}/${id}.csv`, toCsv(built.rows));
      if (built.table) {
        await Deno.writeTextFile(`${ctx.outDir}/tables/${id}.md`, tableToMarkdown(built.table));
        await Deno.writeTextFile(`${ctx.outDir}/tables/${id}.html`, tableToHtml(built.table));
        files.push(`tables/${id}.md`, `tables/${id}.html`);
      }
      figures.push({
        id,
        title: def.title,
        paper: def.paper,
        description: def.description,
        svg,
        files,
        table: built.table,
        series: built.series,
        instanceKeys: built.instanceKeys,
        note: built.note,
      });
      ctx.progress.update(i + 1, id);
    }

    // Which series (method, k, ν, seed) each input evaluated, for the report's input list.
    const evaluated = new Map<string, string[]>();
    for (const s of (await scope.series()).values()) {
      evaluated.set(s.instance_key, [...(evaluated.get(s.instance_key) ?? []), s.display]);
    }
    const report = buildReport({
      title: params.title ?? `Early weight averaging: ${params.pipeline}`,
      pipeline: params.pipeline,
      figures,
      skipped,
      inputs: refs.map((r) => ({
        key: r.key,
        step: r.step,
        node: r.node,
        params: r.params,
        series: evaluated.get(r.key),
      })),
    });
    await Deno.writeTextFile(`${ctx.outDir}/report.html`, report);
    const index = {
      pipeline: params.pipeline,
      figures: figures.map((f) => ({ id: f.id, files: f.files, instance_keys: f.instanceKeys })),
      skipped,
    };
    await Deno.writeTextFile(`${ctx.outDir}/figures.json`, JSON.stringify(index, null, 2) + "\n");
  },
});

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    const src = `${from}/${entry.name}`;
    const dst = `${to}/${entry.name}`;
    if (entry.isDirectory) await copyTree(src, dst);
    else if (entry.isFile) await Deno.copyFile(src, dst);
  }
}

/**
 * Copy a plot instance's outputs to `dest` (e.g. artifacts/figures/<pipeline>/),
 * replacing what an earlier run left there. The copy is made beside `dest` first and
 * renamed into place, so a reader never sees half a folder.
 */
export async function publishFigures(outDir: string, dest: string): Promise<void> {
  // The folder is replaced whole: refuse a name that points elsewhere ("..", ".", "").
  const name = dest.slice(dest.lastIndexOf("/") + 1);
  const trimmed = dest.replace(/\/+$/, "");
  if (!PUBLISH_NAME.test(name)) {
    throw new Error(
      `plot: cannot publish figures to ${dest}: the pipeline name "${name}" must be ` +
        `letters, digits, '.', '_' or '-', not starting with '.'`,
    );
  }
  const staging = `${trimmed}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await copyTree(outDir, staging);
  await Deno.remove(trimmed, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await Deno.rename(staging, trimmed);
}
