// An HTTP source of USD rates for tests, over a real local server on 127.0.0.1: it answers every GET with the
// documented body ({"rates": {"ETH": "3000.00"}}) of the rates it holds, which a test changes between refreshes.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export type RatesServer = {
  /** The URL to read (RATES_HTTP_URL, httpRateSource's url). */
  readonly url: string;
  /** Asset code → USD price as text: what the next GET answers. */
  rates: Record<string, string>;
  close(): Promise<void>;
};

export async function startRatesServer(rates: Record<string, string>): Promise<RatesServer> {
  const server = createServer((_request, response) => {
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ rates: held.rates }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const held: RatesServer = {
    url: `http://127.0.0.1:${port}/rates`,
    rates,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  return held;
}
