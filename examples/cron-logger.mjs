// cron-logger.mjs: report a cron's runs to cronkeeper's check-in API.
//
// The seed's two functions, for a Node script or a serverless route (Node 18+, Deno, Bun,
// edge runtimes: anything with fetch). No dependencies; copy this file into your project.
//
//   import { startCronRun, completeCronRun } from "./cron-logger.mjs";
//   const id = await startCronRun("backup");
//   try {
//     const rows = await doTheWork();
//     await completeCronRun(id, "success", rows);
//   } catch (err) {
//     await completeCronRun(id, "error", 0, String(err));
//     throw err;
//   }
//
// Configuration, from the environment (or createCronLogger({ url, key })):
//   CRONKEEPER_URL       the cronkeeper server, e.g. https://cron.example.com
//   CRONKEEPER_PING_KEY  the job's ping key (its ping_key_env in cronkeeper.toml),
//                        or CRON_SECRET, which may report any job
//
// Recording history must never stop the work: neither function throws. A start that is
// not recorded returns null, and completeCronRun(null, ...) does nothing; failures are
// logged with console.error. A finish is retried once (the API takes the same finish twice
// as one), each request bounded by timeoutMs.

const STATUSES = new Set(["success", "partial", "error"]);

/**
 * @param {{ url?: string, key?: string, timeoutMs?: number }} [options]
 */
export function createCronLogger(options = {}) {
  const env = typeof process !== "undefined" ? process.env : {};
  const url = (options.url ?? env.CRONKEEPER_URL ?? "").replace(/\/+$/, "");
  const key = options.key ?? env.CRONKEEPER_PING_KEY ?? env.CRON_SECRET ?? "";
  const timeoutMs = options.timeoutMs ?? 5000;

  async function post(path, body) {
    const response = await fetch(url + path, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    return { status: response.status, payload };
  }

  function why(answer) {
    return `HTTP ${answer.status}${answer.payload?.error ? `: ${answer.payload.error}` : ""}`;
  }

  /**
   * Record that `cronName` started; its run id, or null when it could not be recorded.
   * @param {string} cronName
   * @param {{ reportDate?: string }} [extra] reportDate: YYYY-MM-DD, the day the run covers
   * @returns {Promise<string | null>}
   */
  async function startCronRun(cronName, extra = {}) {
    if (!url || !key) {
      console.error("cron-logger: set CRONKEEPER_URL and CRONKEEPER_PING_KEY; run not recorded");
      return null;
    }
    try {
      const body = extra.reportDate ? { reportDate: extra.reportDate } : {};
      const answer = await post(`/api/cron/${encodeURIComponent(cronName)}/start`, body);
      if (answer.status === 201 && typeof answer.payload?.runId === "string") {
        return answer.payload.runId;
      }
      console.error(`cron-logger: start of ${cronName} not recorded (${why(answer)})`);
    } catch (error) {
      console.error(`cron-logger: start of ${cronName} not recorded (${error?.name ?? error})`);
    }
    return null;
  }

  /**
   * Record how run `id` ended. Does nothing for a null id.
   * @param {string | null} id
   * @param {"success" | "partial" | "error"} status
   * @param {number} [recordsCount]
   * @param {string} [errorMessage] cut to 4,000 characters and redacted by the server
   * @returns {Promise<void>}
   */
  async function completeCronRun(id, status, recordsCount = 0, errorMessage = undefined) {
    if (!id) return;
    if (!STATUSES.has(status)) {
      console.error(`cron-logger: status must be success, partial or error, not ${status}`);
      status = "error";
    }
    const body = {
      status,
      recordsCount: Math.max(0, Math.trunc(Number(recordsCount) || 0)),
      errorMessage: errorMessage == null ? null : String(errorMessage).slice(0, 4000),
    };
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        const answer = await post(`/api/cron/runs/${encodeURIComponent(id)}/finish`, body);
        if (answer.status === 200) return;
        if (answer.status < 500 && answer.status !== 429) {
          console.error(`cron-logger: end of run ${id} not recorded (${why(answer)})`);
          return;
        }
        if (attempt === 2) console.error(`cron-logger: end of run ${id} not recorded (${why(answer)})`);
      } catch (error) {
        if (attempt === 2) {
          console.error(`cron-logger: end of run ${id} not recorded (${error?.name ?? error})`);
        }
      }
    }
  }

  return { startCronRun, completeCronRun };
}

const defaultLogger = createCronLogger();

/** @type {(cronName: string, extra?: { reportDate?: string }) => Promise<string | null>} */
export const startCronRun = (cronName, extra) => defaultLogger.startCronRun(cronName, extra);

/** @type {(id: string | null, status: "success" | "partial" | "error", recordsCount?: number, errorMessage?: string) => Promise<void>} */
export const completeCronRun = (id, status, recordsCount, errorMessage) =>
  defaultLogger.completeCronRun(id, status, recordsCount, errorMessage);
