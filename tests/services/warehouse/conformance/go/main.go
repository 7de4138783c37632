// The warehouse driven by clickhouse-go v2 over HTTP, with the options Grafana's ClickHouse
// data source uses (database/sql, HTTP protocol, LZ4 or ZSTD compression, settings).
// Prints one line per check: "ok NAME" or "fail NAME: why".
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func options(user, password string, method clickhouse.CompressionMethod) *clickhouse.Options {
	return &clickhouse.Options{
		Addr:        []string{os.Getenv("WAREHOUSE_ADDR")},
		Auth:        clickhouse.Auth{Database: "default", Username: user, Password: password},
		Protocol:    clickhouse.HTTP,
		Compression: &clickhouse.Compression{Method: method},
		DialTimeout: 10 * time.Second,
		ReadTimeout: 120 * time.Second,
		Settings:    clickhouse.Settings{"max_execution_time": maxExecutionTime()},
		ClientInfo: clickhouse.ClientInfo{Products: []struct {
			Name    string
			Version string
		}{{Name: "grafana-datasource", Version: "4.0.0"}}},
	}
}

// maxExecutionTime is what the data source's "query timeout" sets: at most the analyst's cap.
func maxExecutionTime() int {
	if v, err := strconv.Atoi(os.Getenv("MAX_EXECUTION_TIME")); err == nil {
		return v
	}
	return 60
}

func code(err error) int32 {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return ex.Code
	}
	return -1
}

func report(name string, err error) {
	if err != nil {
		fmt.Printf("fail %s: %v\n", name, err)
	} else {
		fmt.Printf("ok %s\n", name)
	}
}

func wantCode(err error, want int32) error {
	if err == nil {
		return fmt.Errorf("no error, want code %d", want)
	}
	if c := code(err); c != want {
		return fmt.Errorf("code %d, want %d: %v", c, want, err)
	}
	return nil
}

func main() {
	ctx := context.Background()
	analystPassword := os.Getenv("ANALYST_PASSWORD")
	for _, m := range []struct {
		name   string
		method clickhouse.CompressionMethod
	}{{"lz4", clickhouse.CompressionLZ4}, {"zstd", clickhouse.CompressionZSTD}} {
		writer := clickhouse.OpenDB(options("default", "", m.method))
		analyst := clickhouse.OpenDB(options("analyst", analystPassword, m.method))
		run(ctx, m.name, writer, analyst)
		writer.Close()
		analyst.Close()
	}
}

func run(ctx context.Context, tag string, writer, analyst *sql.DB) {
	report("ping_"+tag, analyst.PingContext(ctx))

	report("types_"+tag, func() error {
		var (
			s   string
			arr []uint64
			n   *int64
			lc  string
			ts  time.Time
			m   map[string]uint64
			fs  string
		)
		row := analyst.QueryRowContext(ctx, `SELECT 'héllo', [1, 2, 3]::Array(UInt64),
			CAST(NULL AS Nullable(Int64)), toLowCardinality('lc'),
			toDateTime64('2024-01-02 03:04:05.678', 3, 'UTC'), map('k', toUInt64(7)),
			toFixedString('ab', 2)`)
		if err := row.Scan(&s, &arr, &n, &lc, &ts, &m, &fs); err != nil {
			return err
		}
		if s != "héllo" || len(arr) != 3 || n != nil || lc != "lc" || ts.UnixMilli() != 1704164645678 ||
			m["k"] != 7 || fs != "ab" {
			return fmt.Errorf("got %q %v %v %q %v %v %q", s, arr, n, lc, ts, m, fs)
		}
		return nil
	}())

	report("params_"+tag, func() error {
		var got uint64
		q := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"x": "41"}))
		if err := analyst.QueryRowContext(q, "SELECT {x:UInt64} + 1").Scan(&got); err != nil {
			return err
		}
		if got != 42 {
			return fmt.Errorf("got %d", got)
		}
		return nil
	}())

	report("stream_1m_"+tag, func() error {
		rows, err := analyst.QueryContext(ctx, "SELECT number, toBool(number % 7 = 3) FROM numbers(1000000)")
		if err != nil {
			return err
		}
		defer rows.Close()
		var count, sum uint64
		for rows.Next() {
			var n uint64
			var flag bool
			if err := rows.Scan(&n, &flag); err != nil {
				return err
			}
			count++
			sum += n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if count != 1000000 || sum != 499999500000 {
			return fmt.Errorf("count %d sum %d", count, sum)
		}
		return nil
	}())

	table := "go_conformance_" + tag
	report("insert_writer_"+tag, func() error {
		if _, err := writer.ExecContext(ctx, "CREATE OR REPLACE TABLE "+table+
			" (id UInt32, name String, tags Array(String), at DateTime) ENGINE = MergeTree ORDER BY id COMMENT 'conformance test'"); err != nil {
			return err
		}
		tx, err := writer.Begin()
		if err != nil {
			return err
		}
		stmt, err := tx.Prepare("INSERT INTO " + table)
		if err != nil {
			return err
		}
		for i := 0; i < 10000; i++ {
			if _, err := stmt.Exec(uint32(i), fmt.Sprintf("n%d", i), []string{"a", "b"}, time.Unix(1700000000, 0)); err != nil {
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		var count uint64
		if err := analyst.QueryRowContext(ctx, "SELECT count() FROM "+table+" WHERE length(tags) = 2").Scan(&count); err != nil {
			return err
		}
		if count != 10000 {
			return fmt.Errorf("count %d", count)
		}
		return nil
	}())

	report("analyst_refused_write_"+tag, func() error {
		_, err := analyst.ExecContext(ctx, "INSERT INTO "+table+" (id) VALUES (1)")
		return wantCode(err, 164)
	}())
	report("analyst_refused_file_"+tag, func() error {
		_, err := analyst.QueryContext(ctx, "SELECT * FROM file('/etc/passwd', 'LineAsString')")
		return wantCode(err, 497)
	}())
	report("error_code_"+tag, func() error {
		_, err := analyst.QueryContext(ctx, "SELECT * FROM no_such_table_here")
		return wantCode(err, 60)
	}())
	report("analyst_settings_"+tag, func() error {
		var got string
		q := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_threads": 2}))
		if err := analyst.QueryRowContext(q, "SELECT getSetting('max_threads')::String").Scan(&got); err != nil {
			return err
		}
		if got != "2" {
			return fmt.Errorf("got %s", got)
		}
		return nil
	}())
	report("session_"+tag, func() error {
		sid := clickhouse.Settings{"session_id": "go-" + tag + fmt.Sprint(time.Now().UnixNano())}
		q := clickhouse.Context(ctx, clickhouse.WithSettings(sid))
		if _, err := writer.ExecContext(q, "CREATE TEMPORARY TABLE go_tmp (a UInt8)"); err != nil {
			return err
		}
		if _, err := writer.ExecContext(q, "INSERT INTO go_tmp VALUES (5)"); err != nil {
			return err
		}
		var got uint8
		if err := writer.QueryRowContext(q, "SELECT a FROM go_tmp").Scan(&got); err != nil {
			return err
		}
		if got != 5 {
			return fmt.Errorf("got %d", got)
		}
		_, err := writer.QueryContext(ctx, "SELECT a FROM go_tmp")
		return wantCode(err, 60)
	}())
}
