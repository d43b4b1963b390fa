// Parsing what Slurm 22.05's commands print (lines captured from a real cluster).
import assert from "node:assert/strict";
import {
  parseSacct,
  parseSbatchId,
  parseScontrolJob,
  parseSqueue,
  RETRYABLE_STATES,
  TERMINAL_STATES,
} from "../../../pipeline/executors/slurm_commands.ts";

Deno.test("sbatch --parsable: the id, with or without a cluster name", () => {
  assert.equal(parseSbatchId("42\n"), "42");
  assert.equal(parseSbatchId("42;lawa\n"), "42");
  assert.throws(() => parseSbatchId("sbatch: error: Batch job submission failed\n"), /no job id/);
});

Deno.test("squeue -o %i|%T|%N|%r", () => {
  assert.deepEqual(parseSqueue("1|PENDING||None\n7|FAILED|vm|NonZeroExitCode\n"), [
    { id: "1", state: "PENDING", node: "", reason: "None" },
    { id: "7", state: "FAILED", node: "vm", reason: "NonZeroExitCode" },
  ]);
  assert.deepEqual(parseSqueue(""), []);
});

Deno.test("scontrol show job -o: state, node, reason, exit code", () => {
  const line = "JobId=1 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A " +
    "Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=FAILED " +
    "Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 " +
    "ExitCode=3:0 RunTime=00:00:01 TimeLimit=UNLIMITED NodeList=vm BatchHost=vm NumNodes=1\n";
  assert.deepEqual(parseScontrolJob(line), {
    id: "1",
    state: "FAILED",
    node: "vm",
    reason: "NonZeroExitCode",
    exitCode: "3:0",
  });
  assert.equal(parseScontrolJob("slurm_load_jobs error: Invalid job id specified\n"), null);
  const pending = parseScontrolJob("JobId=9 JobState=PENDING Reason=Priority NodeList=(null)");
  assert.equal(pending?.node, "");
});

Deno.test("sacct -P: 'CANCELLED by 0' is CANCELLED; unassigned nodes are none", () => {
  assert.deepEqual(
    parseSacct(
      "12|CANCELLED by 0|None assigned|None|0:0\n13|OUT_OF_MEMORY|gpu-3|None|0:125\n",
    ),
    [
      { id: "12", state: "CANCELLED", node: "", reason: "None", exitCode: "0:0" },
      { id: "13", state: "OUT_OF_MEMORY", node: "gpu-3", reason: "None", exitCode: "0:125" },
    ],
  );
});

Deno.test("machine failures are retried; the step's own failures are terminal, not retried", () => {
  for (const s of ["NODE_FAIL", "BOOT_FAIL", "PREEMPTED"]) {
    assert.ok(RETRYABLE_STATES.has(s) && TERMINAL_STATES.has(s), s);
  }
  for (const s of ["FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED"]) {
    assert.ok(!RETRYABLE_STATES.has(s) && TERMINAL_STATES.has(s), s);
  }
  for (const s of ["PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"]) {
    assert.ok(!TERMINAL_STATES.has(s), s);
  }
});
