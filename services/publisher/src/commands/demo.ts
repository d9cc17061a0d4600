import { printJson } from '../output.js';

/** `demo` */
export async function demo(opts: { dir?: string; rawImages?: boolean; json?: boolean }): Promise<void> {
  const { runDemo } = await import('../demo/run-demo.js');
  const json = opts.json === true;
  const tty = process.stdout.isTTY === true;
  const result = await runDemo({
    ...(opts.dir !== undefined ? { dir: opts.dir } : {}),
    ...(opts.rawImages ? { rawImages: true } : {}),
    ...(json
      ? {}
      : {
          say: (line: string) => process.stdout.write(`${line}\n`),
          // On a terminal one line is rewritten; in a log only the last state is printed.
          progress: (line: string, done: boolean) => {
            if (tty) process.stdout.write(`\r${line}${done ? '\n' : ''}`);
            else if (done) process.stdout.write(`${line}\n`);
          },
        }),
  });
  if (json) printJson(result);
  process.exitCode = result.ok ? 0 : 1;
}
