// A DomainActor run on a SimulatedClock with fake KV actors attached through `.provide()`, as the
// coordinator service attaches the real ones. The fake writer stores what it is given at revision + 1.
import { SimulatedClock, createActor, fromPromise } from "xstate";
import {
  domainMachine,
  type DomainEmitted,
  type DomainInput,
  type LoadOutput,
  type WriteInput,
  type WriteOutput,
} from "../../../statecharts/domain";

export type HarnessOptions = {
  /** The n-th load's result (0-based); an Error rejects. */
  load: (n: number) => LoadOutput | Error;
  /** An Error to reject the n-th write with, or null to accept it. */
  write?: (w: WriteInput, n: number) => Error | null;
  solo?: boolean;
};

export function runDomain(input: DomainInput, o: HarnessOptions) {
  const clock = new SimulatedClock();
  const writes: WriteInput[] = [];
  const assignments: DomainEmitted[] = [];
  let loads = 0;
  const machine = domainMachine.provide({
    actors: {
      loadRecord: fromPromise<LoadOutput, { key: string }>(async () => {
        const r = o.load(loads++);
        if (r instanceof Error) throw r;
        return r;
      }),
      writeRecord: fromPromise<WriteOutput, WriteInput>(async ({ input: w }) => {
        writes.push(w);
        const err = o.write?.(w, writes.length - 1) ?? null;
        if (err) throw err;
        return { record: w.record, revision: w.revision + 1, handover: w.handover };
      }),
    },
  });
  const actor = createActor(machine, { input, clock });
  actor.on("assignment", (e) => assignments.push(e));
  actor.start();
  return { actor, clock, writes, assignments, loads: () => loads };
}

/** Lets pending promise callbacks (the fake actors) run; time itself only moves with the SimulatedClock. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}
