// The Lightning rail's thrown errors.

export class LightningRailError extends Error {
  override readonly name = "LightningRailError";
  readonly details: string;
  constructor(message: string, details: string, options?: { cause?: unknown }) {
    super(message, options);
    this.details = details;
  }
}
