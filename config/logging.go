package config

import (
	"io"
	"log/slog"
)

// NewLogger returns a slog logger writing to w in the configured format and
// level. Call it after Validate; an unknown level falls back to info and an
// unknown format to JSON.
func (l Logging) NewLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	switch l.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
