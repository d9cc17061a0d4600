// Prometheus text exposition (format 0.0.4) for the few series the server keeps: requests by
// route and status, request latency histogram, polls, offers and reports by state. Per process:
// each replica is scraped on its own, so nothing here needs sharing between replicas.

const LATENCY_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

function labelText(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`,
  );
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

class Counter {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Record<string, string> = {}, by = 1): void {
    const key = labelText(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [labels, value] of this.values) lines.push(`${this.name}${labels} ${value}`);
    return lines.join('\n');
  }
}

class Histogram {
  private readonly series = new Map<
    string,
    { labels: Record<string, string>; counts: number[]; sum: number; count: number }
  >();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}
  observe(labels: Record<string, string>, value: number): void {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (s === undefined) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= (this.buckets[i] ?? Number.POSITIVE_INFINITY)) s.counts[i] = (s.counts[i] ?? 0) + 1;
    }
    s.sum += value;
    s.count += 1;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.series.values()) {
      this.buckets.forEach((le, i) => {
        lines.push(`${this.name}_bucket${labelText({ ...s.labels, le: String(le) })} ${s.counts[i] ?? 0}`);
      });
      lines.push(`${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
      lines.push(`${this.name}_sum${labelText(s.labels)} ${s.sum}`);
      lines.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
    return lines.join('\n');
  }
}

export class Metrics {
  readonly requests = new Counter(
    'abota_http_requests_total',
    'HTTP requests by route pattern, method and status.',
  );
  readonly latency = new Histogram(
    'abota_http_request_duration_seconds',
    'HTTP request latency by route pattern.',
    LATENCY_BUCKETS_SECONDS,
  );
  readonly polls = new Counter(
    'abota_device_polls_total',
    'Device polls answered, by result (no-update | update | not-modified: a 304 to If-None-Match).',
  );
  readonly offers = new Counter('abota_offers_total', 'Update offers made, by product.');
  readonly offersWithDelta = new Counter(
    'abota_offers_with_delta_total',
    'Update offers that carried at least one delta for the reported version, by product.',
  );
  readonly reports = new Counter('abota_device_reports_total', 'Device reports accepted, by state.');
  readonly registrations = new Counter('abota_device_registrations_total', 'Devices registered.');
  readonly pollStatements = new Counter(
    'abota_poll_statements_total',
    'Poll statements sent to the database (polls are batched: abota_poll_statement_polls_total / this = polls per statement).',
  );
  readonly pollStatementPolls = new Counter(
    'abota_poll_statement_polls_total',
    'Polls carried by those statements.',
  );

  readonly rateLimited = new Counter(
    'abota_rate_limited_total',
    'Requests answered 429, by limit (device API: register | source | device; console: sign-in | sign-in-total).',
  );

  readonly shed = new Counter(
    'abota_requests_shed_total',
    'Requests answered 503 because ABOTA_MAX_IN_FLIGHT requests were already in progress.',
  );

  render(): string {
    return `${[this.shed, this.rateLimited, this.requests, this.latency, this.polls, this.offers, this.offersWithDelta, this.reports, this.registrations, this.pollStatements, this.pollStatementPolls].map((m) => m.render()).join('\n')}\n`;
  }
}
