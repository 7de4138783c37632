// The warehouse driven by ClickHouse JDBC 0.10.0 with its default settings (compress=1 on the
// answer); the writer also compresses its requests (decompress=1). One line per check:
// "ok NAME" or "fail NAME: why".
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public class Check {
    interface Body { void run() throws Exception; }

    static void check(String name, Body body) {
        try {
            body.run();
            System.out.println("ok " + name);
        } catch (Throwable e) {
            String msg = String.valueOf(e.getMessage()).split("\n")[0];
            System.out.println("fail " + name + ": " + e.getClass().getSimpleName() + ": " + msg);
        }
    }

    static void expect(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static void wantCode(Body body, int code) throws Exception {
        try {
            body.run();
        } catch (SQLException e) {
            expect(e.getErrorCode() == code, "code " + e.getErrorCode() + ", want " + code + ": " + e.getMessage());
            return;
        }
        throw new AssertionError("no error, want code " + code);
    }

    static Connection connect(String user, String password, Properties extra) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", password);
        p.putAll(extra);
        return DriverManager.getConnection("jdbc:clickhouse://" + System.getenv("WAREHOUSE_ADDR") + "/default", p);
    }

    public static void main(String[] args) throws Exception {
        Properties none = new Properties();
        Properties compressRequests = new Properties();
        compressRequests.setProperty("decompress", "true");
        try (Connection analyst = connect("analyst", System.getenv("ANALYST_PASSWORD"), none);
             Connection writer = connect("default", "", compressRequests)) {
            check("ping", () -> expect(analyst.isValid(10), "not valid"));
            check("types", () -> {
                try (Statement s = analyst.createStatement();
                     ResultSet rs = s.executeQuery("SELECT 'héllo' AS s, toUInt64(42) AS n, [1, 2, 3] AS a, "
                             + "CAST(NULL AS Nullable(Int32)) AS nn, toDateTime('2024-01-02 03:04:05', 'UTC') AS t, "
                             + "toLowCardinality('lc') AS lc, toDecimal64(1.5, 3) AS d")) {
                    expect(rs.next(), "no row");
                    expect(rs.getString("s").equals("héllo"), rs.getString("s"));
                    expect(rs.getLong("n") == 42, "n");
                    expect(((Object[]) rs.getArray("a").getArray()).length == 3, "a");
                    rs.getInt("nn");
                    expect(rs.wasNull(), "nn not null");
                    expect(rs.getString("lc").equals("lc"), "lc");
                    expect(rs.getBigDecimal("d").doubleValue() == 1.5, "d");
                }
            });
            check("params", () -> {
                try (PreparedStatement ps = analyst.prepareStatement("SELECT ? + 1 AS v, ? AS s")) {
                    ps.setInt(1, 41);
                    ps.setString(2, "it's");
                    try (ResultSet rs = ps.executeQuery()) {
                        expect(rs.next() && rs.getInt(1) == 42 && rs.getString(2).equals("it's"), "value");
                    }
                }
            });
            check("stream_1m", () -> {
                try (Statement s = analyst.createStatement();
                     ResultSet rs = s.executeQuery("SELECT number, toString(number) FROM numbers(1000000)")) {
                    long count = 0, sum = 0;
                    while (rs.next()) { count++; sum += rs.getLong(1); }
                    expect(count == 1000000 && sum == 499999500000L, "count " + count + " sum " + sum);
                }
            });
            check("insert_writer", () -> {
                try (Statement s = writer.createStatement()) {
                    s.execute("CREATE OR REPLACE TABLE jdbc_conformance (id UInt32, name String) ENGINE = MergeTree ORDER BY id COMMENT 'conformance test'");
                }
                try (PreparedStatement ps = writer.prepareStatement("INSERT INTO jdbc_conformance (id, name) VALUES (?, ?)")) {
                    for (int i = 0; i < 10000; i++) {
                        ps.setInt(1, i);
                        ps.setString(2, "n" + i);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                }
                try (Statement s = analyst.createStatement();
                     ResultSet rs = s.executeQuery("SELECT count() FROM jdbc_conformance")) {
                    expect(rs.next() && rs.getLong(1) == 10000, "count");
                }
            });
            check("analyst_refused_write", () -> wantCode(() -> {
                try (Statement s = analyst.createStatement()) { s.execute("INSERT INTO jdbc_conformance VALUES (1, 'x')"); }
            }, 164));
            check("analyst_refused_file", () -> wantCode(() -> {
                try (Statement s = analyst.createStatement()) { s.executeQuery("SELECT * FROM file('/etc/passwd', 'LineAsString')"); }
            }, 497));
            check("error_code", () -> wantCode(() -> {
                try (Statement s = analyst.createStatement()) { s.executeQuery("SELECT * FROM no_such_table_here"); }
            }, 60));
        }
        Properties session = new Properties();
        session.setProperty("clickhouse_setting_session_id", "jdbc-" + System.nanoTime());
        check("session", () -> {
            try (Connection c = connect("default", "", session); Statement s = c.createStatement()) {
                s.execute("CREATE TEMPORARY TABLE jdbc_tmp (a UInt8)");
                s.execute("INSERT INTO jdbc_tmp VALUES (5)");
                try (ResultSet rs = s.executeQuery("SELECT a FROM jdbc_tmp")) {
                    expect(rs.next() && rs.getInt(1) == 5, "value");
                }
            }
            try (Connection other = connect("default", "", new Properties())) {
                wantCode(() -> {
                    try (Statement s = other.createStatement()) { s.executeQuery("SELECT a FROM jdbc_tmp"); }
                }, 60);
            }
        });
    }
}
